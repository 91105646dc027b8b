"""Fake Amazon SageMaker runtime: a real-time endpoint running an LLM chat container.

``POST /endpoints/{EndpointName}/invocations`` carries the container's own payload. The
endpoints here run a chat container (vLLM, LMI or TGI), which answers a body with
``messages`` as OpenAI's chat completion, usage included (``FakeOpenAI``; the endpoint name
stands in for the model). Requests must carry a SigV4 signature for the fake's access key
and the ``sagemaker`` service. Errors are the runtime's ``{"message"}`` with an
``x-amzn-ErrorType`` header; an unknown endpoint is a 400 ``ValidationError``.

Streams (``/invocations-response-stream``) are not served: these containers stream only when
the payload says ``"stream": true``, as ``data:`` lines cut across PayloadPart events, and
any-llm's SageMaker provider neither sends that flag nor reads such lines.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.routes import PatternRoutes
from tests.fakes.server import Handler, JsonReply, RecordedRequest, Reply

ENDPOINTS = ("llama-3-1-8b-chat",)
_INVOCATIONS = re.compile(r"/endpoints/([^/]+)/invocations")
_ERROR_TYPES = {
    400: "ValidationError",
    403: "AccessDeniedException",
    424: "ModelError",
    429: "ThrottlingException",
    503: "ServiceUnavailable",
}


class FakeSageMaker(FakeOpenAI):
    """Point boto3's ``sagemaker-runtime`` client at it with ``endpoint_url``."""

    request_id_header = "x-amzn-requestid"

    def __init__(self, access_key: str = "AKIAFAKESAGEMAKER001") -> None:
        super().__init__(access_key, models=ENDPOINTS)
        self.secret_key = "fake-sagemaker-secret-0123456789"

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return PatternRoutes({("POST", _INVOCATIONS.pattern): self._invoke})

    def error_reply(self, status: int, message: str | None = None) -> JsonReply:
        kind = _ERROR_TYPES.get(status, "InternalFailure")
        return JsonReply({"message": message or kind}, status, headers={"x-amzn-ErrorType": kind})

    def auth_error(self, request: RecordedRequest) -> JsonReply | None:
        scheme, _, fields = request.headers.get("authorization", "").partition(" ")
        credential = fields.split(",")[0].removeprefix("Credential=").split("/")
        # Credential=KEY/DATE/REGION/SERVICE/aws4_request
        if scheme == "AWS4-HMAC-SHA256" and credential[::3] == [self.api_key, "sagemaker"]:
            return None
        return self.error_reply(403, "The security token included in the request is invalid.")

    def _invoke(self, request: RecordedRequest) -> Reply:
        match = _INVOCATIONS.fullmatch(request.path)
        assert match is not None
        endpoint = match.group(1)
        if endpoint not in ENDPOINTS:
            return self.error_reply(400, f"Endpoint {endpoint} of account 123456789012 not found.")
        body = {**request.json_object(), "model": endpoint}
        return self._chat(dataclasses.replace(request, json=body))
