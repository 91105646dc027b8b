"""Fake Vertex AI (Gemini and Claude publishers) and the Google OAuth token endpoint it needs.

Vertex takes no API key: clients sign a JWT with a service account's private key, trade it
at the account's ``token_uri`` for an access token, and send that as a bearer token. So
the fake is also the token endpoint: ``service_account_info`` describes an account with a
freshly generated RSA key whose ``token_uri`` is ``{base_url}/token``, and
``POST /token`` (form ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and
``assertion``) checks the JWT's RS256 signature, issuer and scope before issuing one.

Served under ``/v1beta1`` (google-genai) or ``/v1`` (anthropic's Vertex client), for the
account's project only:

- ``projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent`` and
  ``:streamGenerateContent?alt=sse``: Gemini's wire format (``FakeGemini``);
  ``…:predict``: text embeddings, ``{"instances": [{"content"}]}`` →
  ``{"predictions": [{"embeddings": {"values", "statistics"}}]}``;
- ``projects/{p}/locations/{l}/publishers/anthropic/models/{m}:rawPredict`` and
  ``:streamRawPredict``: Anthropic's Messages API with the model in the path and
  ``anthropic_version: vertex-2023-10-16`` in the body (``FakeAnthropic``).

Errors are Google's ``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes import content as c
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.routes import PatternRoutes
from tests.fakes.server import Handler, JsonReply, RecordedRequest, Reply

PROJECT = "fake-project"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
CLAUDE_VERSION = "vertex-2023-10-16"

_SCOPE = r"/v1(?:beta1)?/projects/([^/]+)/locations/([^/]+)/publishers"
_GOOGLE = _SCOPE + r"/google/models/[^:/]+"
_CLAUDE = _SCOPE + r"/anthropic/models/([^:/]+)"


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class FakeVertex(FakeGemini):
    """One Google Cloud project's Vertex AI endpoint, and its service account."""

    def __init__(self) -> None:
        super().__init__(api_key="")
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.client_email = f"gateway@{PROJECT}.iam.gserviceaccount.com"
        self.issued: list[str] = []
        self._claude = FakeAnthropic()

    def service_account_info(self) -> dict[str, str]:
        """The JSON key file of the account (what ``GOOGLE_APPLICATION_CREDENTIALS`` names)."""
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "fake-key-1",
            "private_key": pem.decode(),
            "client_email": self.client_email,
            "client_id": "100000000000000000001",
            "token_uri": self.base_url + "/token",
        }

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return PatternRoutes(
            {
                ("POST", "/token"): self._token,
                ("POST", _GOOGLE + r":(?:stream)?[gG]enerateContent"): self._generate,
                ("POST", _GOOGLE + r":predict"): self._predict,
                ("POST", _CLAUDE + r":(?:streamR|r)awPredict"): self._claude_messages,
            }
        )

    def takes_json(self, method: str, path: str) -> bool:
        return path != "/token"

    def auth_error(self, request: RecordedRequest) -> JsonReply | None:
        if request.path == "/token":
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in self.issued:
            return self.error_reply(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
            )
        scope = re.match(_SCOPE, request.path)
        if scope is not None and scope.group(1) != PROJECT:
            return self.error_reply(403, f"Permission denied on resource project {scope.group(1)}.")
        return None

    # ----------------------------------------------------------------- OAuth
    def _token(self, request: RecordedRequest) -> Reply:
        form = dict(urllib.parse.parse_qsl(request.body.decode()))
        if form.get("grant_type") != JWT_GRANT:
            return JsonReply({"error": "unsupported_grant_type"}, status=400)
        claims = self._verified_claims(form.get("assertion", ""))
        if claims is None or claims.get("iss") != self.client_email:
            return JsonReply(
                {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
                status=400,
            )
        if CLOUD_SCOPE not in str(claims.get("scope", "")).split():
            return JsonReply({"error": "invalid_scope"}, status=400)
        token = f"ya29.fake-{self.next_id('token')}"
        self.issued.append(token)
        return JsonReply({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _verified_claims(self, assertion: str) -> dict[str, Any] | None:
        """The JWT's claims when it is RS256-signed by the account's key, else None."""
        try:
            head, payload, signature = assertion.split(".")
            header = orjson.loads(_b64decode(head))
            if header.get("alg") != "RS256":
                return None
            self._key.public_key().verify(
                _b64decode(signature),
                f"{head}.{payload}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
            claims: dict[str, Any] = orjson.loads(_b64decode(payload))
        except (ValueError, InvalidSignature, orjson.JSONDecodeError):
            return None
        return claims

    # ----------------------------------------------------------------- publishers
    def _predict(self, request: RecordedRequest) -> Reply:
        instances = request.json_object().get("instances") or []
        texts = [str(item.get("content", "")) for item in instances]
        predictions = [
            {
                "embeddings": {
                    "values": c.embedding_vector(text),
                    "statistics": {"token_count": c.count_words([text]), "truncated": False},
                }
            }
            for text in texts
        ]
        billable = sum(len(text) for text in texts)
        metadata = {"billableCharacterCount": billable}
        return JsonReply({"predictions": predictions, "metadata": metadata})

    def _claude_messages(self, request: RecordedRequest) -> Reply:
        body = request.json_object()
        if body.get("anthropic_version") != CLAUDE_VERSION:
            return self.error_reply(400, f"anthropic_version: must be {CLAUDE_VERSION}")
        match = re.match(_CLAUDE, request.path)
        assert match is not None
        stream = request.path.endswith(":streamRawPredict")
        if bool(body.get("stream")) != stream:
            return self.error_reply(400, "stream must be set on :streamRawPredict and only there")
        return self._claude._messages(
            dataclasses.replace(request, json={**body, "model": match.group(3)})
        )
