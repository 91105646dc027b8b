"""Turn an Anthropic Messages stream into ``chat.completion.chunk`` objects.

Anthropic events go in one at a time; out come the chunks an OpenAI client expects: a first
chunk with the role, content, reasoning and tool-call deltas, signed thinking blocks whole
when they end (``translate/thinking_blocks.py``), the finish reason from ``message_delta``,
and from ``finish`` the usage chunk when the client asked for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from otari_gateway.translate.chat_to_messages import finish_reason
from otari_gateway.translate.errors import UpstreamStreamError
from otari_gateway.translate.reported import reported_model
from otari_gateway.translate.thinking_blocks import ThinkingStream
from otari_gateway.translate.usage import chat_usage, usage_from_messages
from otari_gateway.usage import Usage


class MessagesToChatStream:
    """Turns Anthropic stream events into ``chat.completion.chunk`` objects, one call each.

    ``model`` names the model until ``message_start`` says which one answers. For a
    ``json_answer`` (a JSON ``response_format``, ``translate/structured_output.py``) the
    forced tool's input streams as the content, and any text beside it is left out.
    """

    def __init__(
        self, model: str, *, created: int, include_usage: bool, json_answer: bool = False
    ) -> None:
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._json_answer = json_answer
        self._id = ""
        self._usage: dict[str, Any] = {}
        # message_delta's usage arrived: the count is no longer message_start's placeholder.
        self.usage_final = False
        # Anthropic block index -> OpenAI tool_calls index, which counts tool blocks only.
        self._tool_index: dict[int, int] = {}
        # Blocks whose input is the content: the forced tool of a json_answer.
        self._answer_blocks: set[int] = set()
        self._thinking = ThinkingStream()
        self._opened = False
        self._finished = False

    @property
    def usage(self) -> Usage:
        return usage_from_messages(self._usage)

    @property
    def model(self) -> str:
        return self._model

    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        chunks = self._chunks(event)
        if not chunks or self._opened:
            return chunks
        self._opened = True
        # The role chunk waits for the first delta, as OpenAI opens an answer with content
        # "" when it starts with text and null otherwise: a client that accumulates the
        # stream then holds content null for an answer of tool calls only, as it would
        # from OpenAI.
        text = "content" in chunks[0]["choices"][0]["delta"]
        return [self._chunk({"role": "assistant", "content": "" if text else None}), *chunks]

    def _chunks(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self._id = message.get("id") or self._id
            self._model = reported_model(message, self._model)
            self._merge_usage(message.get("usage"))
            return []
        if kind == "content_block_start":
            return self._block_start(event.get("index"), event.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(event.get("index"), event.get("delta") or {})
        if kind == "content_block_stop":
            return self._block_stop(event.get("index"))
        if kind == "message_delta":
            return self._message_delta(event)
        if kind == "error":
            raise UpstreamStreamError.from_payload(event.get("error"))
        return []  # ping, message_stop and future event types

    def finish(self) -> list[dict[str, Any]]:
        """The trailing usage chunk when the client asked for ``include_usage``."""
        if not self._include_usage:
            return []
        return [{**self._envelope(), "choices": [], "usage": chat_usage(self.usage)}]

    def _merge_usage(self, raw: Any) -> None:
        # message_delta usage is cumulative and may restate input/cache counts.
        if isinstance(raw, Mapping):
            self._usage.update({k: v for k, v in raw.items() if v is not None})

    def _envelope(self) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }

    def _chunk(self, delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
        chunk = {**self._envelope(), "choices": [choice]}
        if self._include_usage:
            # OpenAI sends usage: null on every chunk but the last when include_usage is on.
            chunk["usage"] = None
        return chunk

    def _block_start(self, index: Any, block: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = block.get("type")
        if self._json_answer and kind in ("tool_use", "text"):
            return self._answer_start(index, block)
        if kind == "tool_use" and isinstance(index, int):
            tool_index = len(self._tool_index)
            self._tool_index[index] = tool_index
            initial = block.get("input")
            call = {
                "index": tool_index,
                "id": block.get("id"),
                "type": "function",
                "function": {
                    "name": block.get("name"),
                    "arguments": orjson.dumps(initial).decode() if initial else "",
                },
            }
            return [self._chunk({"tool_calls": [call]})]
        if kind == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if kind in ("thinking", "redacted_thinking") and isinstance(index, int):
            self._thinking.start(index, block)
            if block.get("thinking"):
                return [self._chunk({"reasoning_content": block["thinking"]})]
        return []

    def _answer_start(self, index: Any, block: Mapping[str, Any]) -> list[dict[str, Any]]:
        if block.get("type") != "tool_use" or not isinstance(index, int):
            return []
        self._answer_blocks.add(index)
        initial = block.get("input")
        return [self._chunk({"content": orjson.dumps(initial).decode()})] if initial else []

    def _block_delta(self, index: Any, delta: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = delta.get("type")
        if self._json_answer and kind in ("text_delta", "input_json_delta"):
            fragment = delta.get("partial_json")
            if index not in self._answer_blocks or not fragment:
                return []
            return [self._chunk({"content": fragment})]
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if kind == "thinking_delta" and delta.get("thinking") and isinstance(index, int):
            self._thinking.text(index, delta["thinking"])
            return [self._chunk({"reasoning_content": delta["thinking"]})]
        if kind == "signature_delta" and isinstance(index, int):
            self._thinking.signature(index, str(delta.get("signature") or ""))
            return []
        if kind == "input_json_delta" and delta.get("partial_json") and index in self._tool_index:
            call = {
                "index": self._tool_index[index],
                "function": {"arguments": delta["partial_json"]},
            }
            return [self._chunk({"tool_calls": [call]})]
        return []  # citations_delta: no Chat Completions equivalent

    def _block_stop(self, index: Any) -> list[dict[str, Any]]:
        block = self._thinking.stop(index) if isinstance(index, int) else None
        return [] if block is None else [self._chunk({"thinking_blocks": [block]})]

    def _message_delta(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        self._merge_usage(event.get("usage"))
        self.usage_final = self.usage_final or isinstance(event.get("usage"), Mapping)
        delta = event.get("delta") or {}
        stop = delta.get("stop_reason")
        if stop is None or self._finished:
            return []
        self._finished = True
        return [self._chunk({}, finish_reason(stop, json_answer=self._json_answer))]
