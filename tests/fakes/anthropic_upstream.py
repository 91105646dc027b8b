"""Fake Anthropic Messages API on the real wire format.

Serves ``POST /v1/messages`` (JSON, or SSE with ``event:`` lines in the real order:
message_start, content_block_start, ping, content_block_delta..., content_block_stop,
message_delta, message_stop; text and tool_use blocks with ``input_json_delta``) and
``POST /v1/messages/count_tokens`` and ``GET /v1/models`` (paged with ``limit`` and
``after_id``, ``has_more``/``first_id``/``last_id`` as the real API). Requires
``x-api-key`` and ``anthropic-version``.
Errors use ``{"type": "error", "error": {"type", "message"}, "request_id"}``.

Usage: ``input_tokens`` is the word count of system + messages; when a system block
carries ``cache_control`` the usage also reports ``cache_read_input_tokens = 3``
(nothing is subtracted from ``input_tokens``). ``message_start`` reports
``output_tokens: 1``; ``message_delta`` reports the final ``output_tokens``.
Content rules are in ``tests.fakes.content``.

Extended thinking (``thinking: {type: enabled}``), as the real API: the answer starts with
a thinking block (``c.thinking_text``) signed by ``c.thinking_signature``, streamed as
thinking_delta events then one signature_delta; its words count in ``output_tokens`` and in
``output_tokens_details.thinking_tokens``. A request is refused (400, the real message) when
a thinking block it sends back carries a signature the fake did not issue for that text, or,
with thinking on, when its last assistant turn, before a tool-result turn, does not start
with a thinking block.

A tool forced by ``tool_choice: {type: tool, name}`` is always called, and when its
``input_schema`` lists ``required`` properties its input is an instance of that schema (every
required property, ``$ref``s into ``$defs`` followed: strings are the last user text, integers
1, numbers 1.5, booleans true, enums their first value, arrays one item, the first of an
``anyOf``), as a structured-output answer would be.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from tests.fakes import content as c
from tests.fakes.server import FakeUpstream, Handler, JsonReply, RecordedRequest, Reply, SseReply
from tests.fakes.server import sse_frame as frame

DEFAULT_MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")
_MODEL_CREATED_AT = "2025-09-29T00:00:00Z"

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def _error(status: int, message: str | None = None) -> JsonReply:
    fallback = "api_error" if status >= 500 else "invalid_request_error"
    type_, default_message = _ERRORS.get(status, (fallback, "Error."))
    body = {
        "type": "error",
        "error": {"type": type_, "message": message or default_message},
        "request_id": f"req_fake_{time.monotonic_ns():x}",
    }
    return JsonReply(body, status=status)


def _block_text(block: Any) -> str:
    """Text of one content block, including the text inside a tool_result."""
    if not isinstance(block, dict):
        return ""
    if block.get("type") == "tool_result":
        return c.text_of(block.get("content"))
    return c.text_of([block])


def _message_texts(body: dict[str, Any]) -> list[str]:
    texts = [c.text_of(body.get("system"))]
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list):
            texts.extend(_block_text(block) for block in content)
        else:
            texts.append(c.text_of(content))
    return texts


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    """Text blocks of the last user message that has any (tool_result-only turns skipped)."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        text = c.text_of(message.get("content"))
        if text or isinstance(message.get("content"), str):
            return text
    return ""


def _is_tool_result(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content
    )


def _thinking_on(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"


def _thinking_error(body: dict[str, Any]) -> JsonReply | None:
    messages: list[dict[str, Any]] = body["messages"]
    for i, message in enumerate(messages):
        content = message.get("content")
        for j, block in enumerate(content if isinstance(content, list) else []):
            if block.get("type") != "thinking":
                continue
            if block.get("signature") != c.thinking_signature(str(block.get("thinking"))):
                return _error(
                    400, f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                )
    if not _thinking_on(body) or len(messages) < 2 or not _is_tool_result(messages[-1]):
        return None
    i = len(messages) - 2
    content = messages[i].get("content")
    first = content[0].get("type") if isinstance(content, list) and content else "text"
    if first in ("thinking", "redacted_thinking"):
        return None
    return _error(
        400,
        f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
        f"`{first}`. When `thinking` is enabled, a final `assistant` message must start with a "
        "thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). "
        "We recommend you include thinking blocks from previous turns. To avoid this "
        "requirement, disable `thinking`. Please consult our documentation at "
        "https://docs.claude.com/en/docs/build-with-claude/extended-thinking",
    )


def _forced_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    choice = body.get("tool_choice")
    if not isinstance(choice, dict) or choice.get("type") != "tool":
        return None
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    return next((t for t in tools if t.get("name") == choice.get("name")), None)


_SCALARS: dict[str, Any] = {"integer": 1, "number": 1.5, "boolean": True, "null": None}


def _instance(schema: Any, defs: dict[str, Any], text: str) -> Any:
    """A value of ``schema`` with its required properties only (see the module docstring)."""
    if not isinstance(schema, dict):
        return text
    if isinstance(schema.get("$ref"), str):
        return _instance(defs.get(schema["$ref"].rsplit("/", 1)[-1]), defs, text)
    if schema.get("enum"):
        return schema["enum"][0]
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return _instance(options[0], defs, text)
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties") or {}
        required = schema.get("required") or []
        return {name: _instance(properties.get(name), defs, text) for name in required}
    if kind == "array":
        return [_instance(schema.get("items"), defs, text)]
    return _SCALARS.get(kind, text) if isinstance(kind, str) else text


def _tool_input(tool: dict[str, Any], forced: bool, user_text: str) -> Any:
    schema = tool.get("input_schema")
    if forced and isinstance(schema, dict) and schema.get("required"):
        return _instance(schema, schema.get("$defs") or {}, user_text)
    return c.tool_arguments(user_text)


def _uses_cache(body: dict[str, Any]) -> bool:
    system = body.get("system")
    return isinstance(system, list) and any(
        isinstance(block, dict) and "cache_control" in block for block in system
    )


class FakeAnthropic(FakeUpstream):
    """Fake ``https://api.anthropic.com``; point SDKs at ``base_url`` (no ``/v1``)."""

    request_id_header = "request-id"
    malformed_json_message = "There was an error parsing the body of your request: invalid JSON"

    def __init__(
        self,
        api_key: str = "sk-ant-fake",
        *,
        models: Sequence[str] = DEFAULT_MODELS,
        stream_interval: float = 0.0,
    ) -> None:
        super().__init__(api_key, stream_interval=stream_interval)
        self.models = tuple(models)

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {
            ("POST", "/v1/messages"): self._messages,
            ("POST", "/v1/messages/count_tokens"): self._count_tokens,
            ("GET", "/v1/models"): self._models,
        }

    def error_reply(self, status: int, message: str | None = None) -> JsonReply:
        return _error(status, message)

    def default_fault_headers(self, status: int) -> dict[str, str]:
        if status == 429:
            return {"retry-after": "1", "anthropic-ratelimit-requests-remaining": "0"}
        return {}

    def auth_error(self, request: RecordedRequest) -> JsonReply | None:
        # ``x-api-key`` is the documented header; anthropic SDK 2.x sends the key
        # as ``Authorization: Bearer`` instead, which the real API also accepts.
        api_key = request.headers.get("x-api-key")
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        if api_key is None and scheme.lower() == "bearer":
            api_key = bearer.strip()
        if api_key is None:
            return _error(401, "x-api-key header is required")
        if api_key != self.api_key:
            return _error(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "anthropic-version: header is required")
        return None

    @staticmethod
    def _validate(body: dict[str, Any], *, need_max_tokens: bool) -> JsonReply | None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "model: Field required")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, "messages: Field required")
        if need_max_tokens and not isinstance(body.get("max_tokens"), int):
            return _error(400, "max_tokens: Field required")
        if c.is_missing_model(model):
            return _error(404, f"model: {model}")
        return None

    def _count_tokens(self, request: RecordedRequest) -> Reply:
        body = request.json_object()
        if (bad := self._validate(body, need_max_tokens=False)) is not None:
            return bad
        return JsonReply({"input_tokens": c.count_words(_message_texts(body))})

    def _messages(self, request: RecordedRequest) -> Reply:
        body = request.json_object()
        if (bad := self._validate(body, need_max_tokens=True)) is not None:
            return bad
        if (bad := _thinking_error(body)) is not None:
            return bad
        messages: list[dict[str, Any]] = body["messages"]
        user_text = _last_user_text(messages)
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and "name" in t]
        forced = _forced_tool(body)
        tool = forced or (tools[0] if tools and not _is_tool_result(messages[-1]) else None)
        tool_name = tool["name"] if tool else None
        reply = c.echo_reply(user_text)
        usage: dict[str, Any] = {
            "input_tokens": c.count_words(_message_texts(body)),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": c.CACHE_READ_TOKENS if _uses_cache(body) else 0,
            "output_tokens": c.TOOL_CALL_OUTPUT_TOKENS if tool_name else c.reply_tokens(reply),
            "service_tier": "standard",
        }
        if tool:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": f"toolu_fake_{self.next_id('call')}",
                "name": tool_name,
                "input": _tool_input(tool, forced is not None, user_text),
            }
        else:
            block = {"type": "text", "text": reply}
        content = [block]
        if _thinking_on(body):
            thought = c.thinking_text(user_text)
            signature = c.thinking_signature(thought)
            content.insert(0, {"type": "thinking", "thinking": thought, "signature": signature})
            usage["output_tokens"] += c.reply_tokens(thought)
            usage["output_tokens_details"] = {"thinking_tokens": c.reply_tokens(thought)}
        message = {
            "id": f"msg_fake{self.next_id()}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": "tool_use" if tool_name else "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        if body.get("stream"):
            return self._stream(message)
        return JsonReply(message)

    @staticmethod
    def _stream(message: dict[str, Any]) -> SseReply:
        frames: list[bytes] = []

        def event(kind: str, **fields: Any) -> None:
            frames.append(frame({"type": kind, **fields}, event=kind))

        usage = message["usage"]
        start_usage = {k: v for k, v in usage.items() if k != "output_tokens_details"}
        start_usage["output_tokens"] = 1
        start = {**message, "content": [], "stop_reason": None, "usage": start_usage}
        event("message_start", message=start)
        for index, block in enumerate(message["content"]):
            for kind, fields in _block_events(block):
                event(kind, index=index, **fields)
                if kind == "content_block_start" and index == 0:
                    event("ping")
            event("content_block_stop", index=index)
        delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
        final = {k: v for k, v in usage.items() if k in ("output_tokens", "output_tokens_details")}
        event("message_delta", delta=delta, usage=final)
        event("message_stop")
        return SseReply(frames)

    def _models(self, request: RecordedRequest) -> Reply:
        limit = int(request.query.get("limit", "20"))
        after = request.query.get("after_id")
        start = self.models.index(after) + 1 if after in self.models else 0
        page = self.models[start : start + limit]
        data = [
            {
                "type": "model",
                "id": model,
                "display_name": model.replace("-", " ").title(),
                "created_at": _MODEL_CREATED_AT,
            }
            for model in page
        ]
        return JsonReply(
            {
                "data": data,
                "has_more": start + limit < len(self.models),
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
            }
        )


def _block_events(block: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """content_block_start and the deltas of one block, as the real API streams them."""
    if block["type"] == "tool_use":
        arguments = orjson.dumps(block["input"]).decode()
        deltas = [
            {"type": "input_json_delta", "partial_json": piece}
            for piece in ["", *c.split_fragments(arguments)]
        ]
        opened: dict[str, Any] = {**block, "input": {}}
    elif block["type"] == "thinking":
        deltas = [
            {"type": "thinking_delta", "thinking": p} for p in c.stream_pieces(block["thinking"])
        ]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
        opened = {"type": "thinking", "thinking": "", "signature": ""}
    else:
        deltas = [{"type": "text_delta", "text": p} for p in c.stream_pieces(block["text"])]
        opened = {"type": "text", "text": ""}
    return [
        ("content_block_start", {"content_block": opened}),
        *(("content_block_delta", {"delta": delta}) for delta in deltas),
    ]
