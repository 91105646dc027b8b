"""Fake OpenAI API: chat completions, Responses, embeddings and models, on the real wire format.

Serves ``/v1/chat/completions`` (JSON and ``data:``-only SSE ending in ``data: [DONE]``,
with ``stream_options.include_usage`` handled as the real API: every chunk carries
``"usage": null`` and a final chunk with ``choices: []`` carries the usage),
``/v1/responses`` (JSON and ``event:``/``data:`` SSE with ``sequence_number``; stored
responses as in ``tests.fakes.openai_stored_responses``),
``/v1/embeddings``, ``GET /v1/models``, and the surfaces of ``tests.fakes.openai_media``
(moderations, rerank, images, speech, transcriptions) and of ``tests.fakes.openai_batches``
(files, batches). Errors use ``{"error": {message, type,
param, code}}``. Content rules are in ``tests.fakes.content``.

A chat model whose name contains ``c.REASONING_MODEL_MARK`` answers as DeepSeek and vLLM do:
``reasoning_content`` on the message (streamed as ``reasoning_content`` deltas before the
content), its words in ``completion_tokens`` and in
``completion_tokens_details.reasoning_tokens``.

Chat requests are refused (400, OpenAI's own message) as OpenAI refuses them: ``max_tokens``
for its reasoning models (``o1``, ``o3``, ``o4``, ``gpt-5`` …), which want
``max_completion_tokens``, and ``reasoning_effort`` for its models that do not reason
(``gpt-4*``, ``gpt-3.5*``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from tests.fakes import content as c
from tests.fakes.openai_stored_responses import OpenAIResponseStore
from tests.fakes.server import Handler, JsonReply, RecordedRequest, Reply, SseReply
from tests.fakes.server import sse_frame as frame

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
OPENAI_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")

_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("invalid_request_error", "Invalid request.", None),
    401: ("invalid_request_error", "Incorrect API key provided.", "invalid_api_key"),
    403: ("invalid_request_error", "You are not allowed to sample from this model", None),
    404: ("invalid_request_error", "The requested resource was not found.", None),
    429: (
        "requests",
        "Rate limit reached for requests. Please try again in 1s.",
        "rate_limit_exceeded",
    ),
    500: (
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
        None,
    ),
    503: ("server_error", "The engine is currently overloaded, please try again later.", None),
}


def _error(
    status: int, message: str | None = None, *, param: str | None = None, code: str | None = None
) -> JsonReply:
    """OpenAI envelope; without ``message`` the status' usual message and code are used."""
    fallback = "server_error" if status >= 500 else "invalid_request_error"
    type_, default_message, default_code = _ERRORS.get(status, (fallback, "Error.", None))
    if message is None:
        message, code = default_message, default_code
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JsonReply(body, status=status)


def _mask(key: str) -> str:
    return f"{key[:3]}{'*' * 8}{key[-4:]}" if len(key) > 8 else "*" * len(key)


def _chat_usage(prompt: int, completion: int, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


class FakeOpenAI(OpenAIResponseStore):
    """Fake ``https://api.openai.com``; point SDKs at ``base_url + "/v1"``."""

    request_id_header = "x-request-id"
    malformed_json_message = (
        "We could not parse the JSON body of your request. (HINT: This likely means you "
        "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
        "but what was sent was not valid JSON.)"
    )

    def __init__(
        self,
        api_key: str = "sk-fake-openai",
        *,
        models: Sequence[str] = DEFAULT_MODELS,
        stream_interval: float = 0.0,
    ) -> None:
        super().__init__(api_key, stream_interval=stream_interval)
        self.models = tuple(models)

    # ----------------------------------------------------------------- plumbing
    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/responses"): self._responses,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("GET", "/v1/models"): self._models,
            **self.media_routes(),
            **self.batch_routes(),
        }

    def error_reply(self, status: int, message: str | None = None) -> JsonReply:
        return _error(status, message)

    def default_fault_headers(self, status: int) -> dict[str, str]:
        if status == 429:
            return {"retry-after": "1", "x-ratelimit-remaining-requests": "0"}
        return {}

    def auth_error(self, request: RecordedRequest) -> JsonReply | None:
        header = request.headers.get("authorization", "")
        if not header:
            return _error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or key.strip() != self.api_key:
            return _error(
                401,
                f"Incorrect API key provided: {_mask(key.strip())}. You can find your API "
                "key at https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        return None

    @staticmethod
    def _check_model(body: dict[str, Any]) -> JsonReply | None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "you must provide a model parameter")
        if c.is_missing_model(model):
            return _error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        return None

    @staticmethod
    def _check_chat_parameters(body: dict[str, Any]) -> JsonReply | None:
        model = body["model"]
        if model.startswith(OPENAI_REASONING_PREFIXES) and "max_tokens" in body:
            return _error(
                400,
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
                param="max_tokens",
                code="unsupported_parameter",
            )
        if model.startswith(("gpt-4", "gpt-3.5")) and "reasoning_effort" in body:
            return _error(
                400,
                "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                param="reasoning_effort",
                code="unsupported_parameter",
            )
        return None

    # ----------------------------------------------------------------- chat
    def _chat(self, request: RecordedRequest) -> Reply:
        body = request.json_object()
        if (bad := self._check_model(body)) is not None:
            return bad
        if (bad := self._check_chat_parameters(body)) is not None:
            return bad
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(
                400,
                "Missing required parameter: 'messages'.",
                param="messages",
                code="missing_required_parameter",
            )
        user_text = next(
            (c.text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
            "",
        )
        prompt = c.count_words(c.text_of(m.get("content")) for m in messages)
        tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
        tool = (
            tools[0]["function"]["name"] if tools and messages[-1].get("role") != "tool" else None
        )
        n = int(body.get("n") or 1)
        reply = c.echo_reply(user_text)
        reasoning = c.thinking_text(user_text) if c.REASONING_MODEL_MARK in body["model"] else ""
        per_choice = c.TOOL_CALL_OUTPUT_TOKENS if tool else c.reply_tokens(reply)
        per_choice += c.reply_tokens(reasoning)
        usage = _chat_usage(prompt, per_choice * n, c.reply_tokens(reasoning) * n)
        call_ids = [f"call_fake_{self.next_id('call')}" for _ in range(n)] if tool else []
        base = {
            "id": f"chatcmpl-fake{self.next_id()}",
            "created": int(time.time()),
            "model": body["model"],
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        arguments = orjson.dumps(c.tool_arguments(user_text)).decode()
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return self._chat_stream(
                base, n, (reasoning, reply), tool, call_ids, arguments, usage, include_usage
            )
        choices = []
        for index in range(n):
            message: dict[str, Any] = {"role": "assistant", "refusal": None, "annotations": []}
            if reasoning:
                message["reasoning_content"] = reasoning
            if tool:
                message["content"] = None
                message["tool_calls"] = [
                    {
                        "id": call_ids[index],
                        "type": "function",
                        "function": {"name": tool, "arguments": arguments},
                    }
                ]
            else:
                message["content"] = reply
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if tool else "stop",
                }
            )
        return JsonReply({**base, "object": "chat.completion", "choices": choices, "usage": usage})

    @staticmethod
    def _chat_stream(
        base: dict[str, Any],
        n: int,
        texts: tuple[str, str],
        tool: str | None,
        call_ids: list[str],
        arguments: str,
        usage: dict[str, Any],
        include_usage: bool,
    ) -> SseReply:
        frames: list[bytes] = []

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> None:
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            data: dict[str, Any] = {**base, "object": "chat.completion.chunk", "choices": [choice]}
            if include_usage:
                data["usage"] = None
            frames.append(frame(data))

        reasoning, reply = texts
        for index in range(n):
            for position, piece in enumerate(c.stream_pieces(reasoning) if reasoning else []):
                role = {"role": "assistant", "content": None} if position == 0 else {}
                chunk(index, {**role, "reasoning_content": piece})
            if tool:
                call = {"index": 0, "id": call_ids[index], "type": "function"}
                call["function"] = {"name": tool, "arguments": ""}
                chunk(
                    index,
                    {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None},
                )
                for piece in c.split_fragments(arguments):
                    chunk(index, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                chunk(index, {}, "tool_calls")
            else:
                chunk(index, {"role": "assistant", "content": "", "refusal": None})
                for piece in c.stream_pieces(reply):
                    chunk(index, {"content": piece})
                chunk(index, {}, "stop")
        if include_usage:
            frames.append(
                frame({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
            )
        frames.append(frame(b"[DONE]"))
        return SseReply(frames)

    # ----------------------------------------------------------------- responses
    def _responses(self, request: RecordedRequest) -> Reply:
        body = request.json_object()
        if (bad := self._check_model(body)) is not None:
            return bad
        raw_input = body.get("input")
        if isinstance(raw_input, str):
            items: list[dict[str, Any]] = [{"role": "user", "content": raw_input}]
        elif isinstance(raw_input, list) and raw_input:
            items = [item for item in raw_input if isinstance(item, dict)]
        else:
            return _error(
                400,
                "Missing required parameter: 'input'.",
                param="input",
                code="missing_required_parameter",
            )
        earlier = self.earlier_items(body)
        if isinstance(earlier, JsonReply):
            return earlier
        user_text = next(
            (c.text_of(i.get("content")) for i in reversed(items) if i.get("role") == "user"), ""
        )
        texts = [c.text_of(i.get("content")) for i in earlier + items]
        texts += [i["output"] for i in items if isinstance(i.get("output"), str)]
        if isinstance(body.get("instructions"), str):
            texts.append(body["instructions"])
        tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
        last_is_result = items[-1].get("type") == "function_call_output"
        tool = tools[0].get("name") if tools and not last_is_result else None
        reply = c.echo_reply(user_text)
        out_tokens = c.TOOL_CALL_OUTPUT_TOKENS if tool else c.reply_tokens(reply)
        in_tokens = c.count_words(texts)
        usage = {
            "input_tokens": in_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": out_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": in_tokens + out_tokens,
        }
        number = self.next_id()
        if tool:
            arguments = orjson.dumps(c.tool_arguments(user_text)).decode()
            item: dict[str, Any] = {
                "id": f"fc_fake{number}",
                "type": "function_call",
                "status": "completed",
                "arguments": arguments,
                "call_id": f"call_fake_{self.next_id('call')}",
                "name": tool,
            }
        else:
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": reply}
            item = {
                "id": f"msg_fake{number}",
                "type": "message",
                "status": "completed",
                "content": [part],
                "role": "assistant",
            }
        created = int(time.time())
        response = {
            "id": f"resp_{secrets.token_hex(12)}",
            "object": "response",
            "created_at": created,
            "status": "completed",
            "background": False,
            "completed_at": created,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": body["model"],
            "output": [item],
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage,
            "user": None,
            "metadata": body.get("metadata") or {},
        }
        self.keep(response, items)
        if body.get("stream"):
            return self._responses_stream(response, item)
        return JsonReply(response)

    @staticmethod
    def _responses_stream(response: dict[str, Any], item: dict[str, Any]) -> SseReply:
        frames: list[bytes] = []

        def event(kind: str, **fields: Any) -> None:
            data = {"type": kind, "sequence_number": len(frames), **fields}
            frames.append(frame(data, event=kind))

        pending = {**response, "status": "in_progress", "completed_at": None}
        pending.update(output=[], usage=None)
        event("response.created", response=pending)
        event("response.in_progress", response=pending)
        ids = {"item_id": item["id"], "output_index": 0}
        if item["type"] == "function_call":
            started = {**item, "status": "in_progress", "arguments": ""}
            event("response.output_item.added", output_index=0, item=started)
            for piece in c.split_fragments(item["arguments"]):
                event("response.function_call_arguments.delta", **ids, delta=piece)
            done = {"name": item["name"], "arguments": item["arguments"]}
            event("response.function_call_arguments.done", **ids, **done)
        else:
            text = item["content"][0]["text"]
            empty_part = {**item["content"][0], "text": ""}
            started = {**item, "status": "in_progress", "content": []}
            event("response.output_item.added", output_index=0, item=started)
            event("response.content_part.added", **ids, content_index=0, part=empty_part)
            for piece in c.stream_pieces(text):
                delta = {"content_index": 0, "delta": piece, "logprobs": []}
                event("response.output_text.delta", **ids, **delta)
            event("response.output_text.done", **ids, content_index=0, text=text, logprobs=[])
            event("response.content_part.done", **ids, content_index=0, part=item["content"][0])
        event("response.output_item.done", output_index=0, item=item)
        event("response.completed", response=response)
        return SseReply(frames)

    # ----------------------------------------------------------------- embeddings / models
    def _embeddings(self, request: RecordedRequest) -> Reply:
        body = request.json_object()
        if (bad := self._check_model(body)) is not None:
            return bad
        raw = body.get("input")
        if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
            inputs: list[Any] = [raw]
        elif isinstance(raw, list) and raw:
            inputs = raw
        else:
            return _error(400, "'input' is a required property", param="input")
        dimensions = int(body.get("dimensions") or c.EMBEDDING_DIMENSIONS)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        tokens = 0
        for index, value in enumerate(inputs):
            text = value if isinstance(value, str) else " ".join(str(t) for t in value)
            tokens += len(value) if isinstance(value, list) else c.count_words([value])
            vector = c.embedding_vector(text, dimensions)
            embedding: Any = c.embedding_base64(vector) if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JsonReply({"object": "list", "data": data, "model": body["model"], "usage": usage})

    def _models(self, request: RecordedRequest) -> Reply:
        data = [
            {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "system"}
            for model in self.models
        ]
        return JsonReply({"object": "list", "data": data})
