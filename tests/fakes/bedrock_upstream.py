"""Fake Amazon Bedrock runtime: the Converse API, plain and streamed.

``POST /model/{modelId}/converse`` answers JSON; ``/converse-stream`` answers
``application/vnd.amazon.eventstream``: binary messages (prelude with lengths and CRC32,
typed headers naming the event, a JSON payload, a trailing CRC32), one per event:
``messageStart``, ``contentBlockDelta``…, ``contentBlockStop``, ``messageStop``,
``metadata`` (usage). Requests must carry a SigV4 signature for the fake's access key.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Mapping
from typing import Any

import orjson

from tests.fakes import content as c
from tests.fakes.routes import PatternRoutes
from tests.fakes.server import FakeUpstream, Handler, JsonReply, RecordedRequest, Reply, SseReply

_MODEL = re.compile(r"/model/(.+)/converse(?:-stream)?")
CACHE_READ_TOKENS = 2
_ERROR_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    429: "ThrottlingException",
    500: "InternalServerException",
}


def event_message(event_type: str, payload: dict[str, Any]) -> bytes:
    """One AWS event-stream message carrying ``payload`` as the event ``event_type``."""
    headers = b"".join(
        _header(name, value)
        for name, value in (
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        )
    )
    body = orjson.dumps(payload)
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + body
    return head + struct.pack(">I", zlib.crc32(head))


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    # Header value type 7 is a UTF-8 string with a two-byte length.
    return (
        bytes([len(raw_name)]) + raw_name + b"\x07" + struct.pack(">H", len(raw_value)) + raw_value
    )


class FakeBedrock(FakeUpstream):
    """Point boto3 at it with ``endpoint_url`` (the instance ``api_base``)."""

    request_id_header = "x-amzn-requestid"

    def __init__(
        self, access_key: str = "AKIAFAKEBEDROCK00001", *, stream_interval: float = 0.0
    ) -> None:
        super().__init__(access_key, stream_interval=stream_interval)
        self.secret_key = "fake-bedrock-secret-0123456789"

    def gateway_instance(self) -> dict[str, str]:
        """The gateway's provider block for this fake: its endpoint, region and SigV4 keys."""
        return {
            "api_base": self.base_url,
            "region_name": "us-east-1",
            "aws_access_key_id": self.api_key,
            "aws_secret_access_key": self.secret_key,
        }

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return PatternRoutes(
            {
                ("POST", r"/model/.+/converse"): self._converse,
                ("POST", r"/model/.+/converse-stream"): self._converse,
            }
        )

    def error_reply(self, status: int, message: str | None = None) -> JsonReply:
        kind = _ERROR_TYPES.get(status, "InternalServerException")
        return JsonReply(
            {"message": message or kind}, status, headers={"x-amzn-ErrorType": f"{kind}:"}
        )

    def auth_error(self, request: RecordedRequest) -> JsonReply | None:
        signature = request.headers.get("authorization", "")
        if not signature.startswith(f"AWS4-HMAC-SHA256 Credential={self.api_key}/"):
            return self.error_reply(403, "The security token included in the request is invalid.")
        return None

    def _converse(self, request: RecordedRequest) -> Reply:
        match = _MODEL.fullmatch(request.path)
        assert match is not None
        model = match.group(1)
        if c.is_missing_model(model):
            return self.error_reply(404, "The provided model identifier is invalid.")
        body = request.json_object()
        messages = body.get("messages") or []
        texts = [
            " ".join(block["text"] for block in m.get("content") or [] if "text" in block)
            for m in messages
        ]
        system = [block["text"] for block in body.get("system") or [] if "text" in block]
        user_text = next(
            (
                text
                for m, text in zip(reversed(messages), reversed(texts), strict=True)
                if m.get("role") == "user"
            ),
            "",
        )
        reply = c.echo_reply(user_text)
        usage = {
            "inputTokens": c.count_words([*system, *texts]),
            "outputTokens": c.reply_tokens(reply),
            "cacheReadInputTokens": CACHE_READ_TOKENS,
        }
        usage["totalTokens"] = usage["inputTokens"] + usage["outputTokens"] + CACHE_READ_TOKENS
        if request.path.endswith("/converse-stream"):
            frames = [event_message("messageStart", {"role": "assistant"})]
            frames += [
                event_message("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}})
                for p in c.stream_pieces(reply)
            ]
            frames.append(event_message("contentBlockStop", {"contentBlockIndex": 0}))
            frames.append(event_message("messageStop", {"stopReason": "end_turn"}))
            frames.append(event_message("metadata", {"usage": usage, "metrics": {"latencyMs": 1}}))
            return SseReply(frames, content_type="application/vnd.amazon.eventstream")
        return JsonReply(
            {
                "output": {"message": {"role": "assistant", "content": [{"text": reply}]}},
                "stopReason": "end_turn",
                "usage": usage,
                "metrics": {"latencyMs": 1},
            }
        )
