"""Turn a Chat Completions stream into the Anthropic Messages event sequence.

``chat.completion.chunk`` objects go in one at a time; out come ``message_start``, then per
content block (thinking, text, tool_use) ``content_block_start`` → deltas →
``content_block_stop``, and from ``finish`` the ``message_delta`` with the stop reason and
usage. The caller sends ``message_stop`` itself, once it has settled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from otari_gateway.translate.messages_to_chat import reasoning_text, refusal_text, stop_reason
from otari_gateway.translate.reported import opens_stream, read_chat_chunk, reported_model
from otari_gateway.translate.usage import messages_usage, usage_from_chat
from otari_gateway.usage import Usage

Event = tuple[str, dict[str, Any]]


class ChatToMessagesStream:
    """Turns ``chat.completion.chunk`` objects into Anthropic ``(event, data)`` pairs.

    ``model`` names the model in ``message_start`` when the upstream's chunks do not, and
    ``input_tokens`` (the gateway's own count) stands for the input there until the
    upstream's count arrives, which is mostly with the last chunk: clients read the input
    from ``message_start``, the final count from ``message_delta``.
    """

    def __init__(self, model: str, *, message_id: str, input_tokens: int = 0) -> None:
        self._model = model
        self._input_tokens = input_tokens
        self._message_id = message_id
        self._started = False
        self._next_block = 0
        # The open block: ("text", -1), ("thinking", -1) or ("tool", openai_tool_index).
        self._open: tuple[str, int] | None = None
        self._tool_ids: dict[int, str] = {}
        self._finish_reason: str | None = None
        self._refused = False
        self._usage: Mapping[str, Any] | None = None

    @property
    def usage(self) -> Usage:
        return usage_from_chat(self._usage)

    @property
    def usage_final(self) -> bool:
        return self._usage is not None

    def feed(self, chunk: Mapping[str, Any]) -> list[Event]:
        choices, usage = read_chat_chunk(chunk)
        if usage is not None:
            self._usage = usage
        events: list[Event] = []
        if not self._started:
            if not opens_stream(choices, self._usage):
                return []
            self._model = reported_model(chunk, self._model)
            events = self._message_start()
        # Only the first choice is relayed: Anthropic messages have exactly one.
        choice = choices[0] if choices and isinstance(choices[0], Mapping) else {}
        delta = choice.get("delta") or {}
        if reasoning := reasoning_text(delta):
            events += self._append(
                ("thinking", -1), {"type": "thinking_delta", "thinking": reasoning}
            )
        # A refusal streams in place of the content; the client reads it as the text.
        refusal = refusal_text(delta)
        self._refused = self._refused or bool(refusal)
        for text in (delta.get("content"), refusal):
            if isinstance(text, str) and text:
                events += self._append(("text", -1), {"type": "text_delta", "text": text})
        for position, call in enumerate(delta.get("tool_calls") or []):
            if isinstance(call, Mapping):
                events += self._tool_delta(call, position)
        if choice.get("finish_reason"):
            # message_delta waits for finish(): usage usually arrives in a later chunk.
            self._finish_reason = choice["finish_reason"]
        return events

    def finish(self) -> list[Event]:
        """Close the open block and emit ``message_delta``; the caller sends message_stop."""
        events = [] if self._started else self._message_start()
        events += self._close()
        usage = messages_usage(self.usage)
        usage = {k: v for k, v in usage.items() if v or k in ("input_tokens", "output_tokens")}
        reason = stop_reason(
            self._finish_reason, has_tool_calls=bool(self._tool_ids), refused=self._refused
        )
        delta = {"stop_reason": reason, "stop_sequence": None}
        return [
            *events,
            ("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}),
        ]

    def _message_start(self) -> list[Event]:
        self._started = True
        message: dict[str, Any] = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": messages_usage(self.usage)["input_tokens"]
                if self._usage is not None
                else self._input_tokens,
                "output_tokens": 0,
            },
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        self._open = None
        return [
            ("content_block_stop", {"type": "content_block_stop", "index": self._next_block - 1})
        ]

    def _start(self, key: tuple[str, int], block: dict[str, Any]) -> list[Event]:
        events = self._close()
        self._open = key
        start = {"type": "content_block_start", "index": self._next_block, "content_block": block}
        self._next_block += 1
        return [*events, ("content_block_start", start)]

    def _delta(self, payload: dict[str, Any]) -> Event:
        return (
            "content_block_delta",
            {"type": "content_block_delta", "index": self._next_block - 1, "delta": payload},
        )

    def _append(self, key: tuple[str, int], payload: dict[str, Any]) -> list[Event]:
        if self._open == key:
            return [self._delta(payload)]
        block: dict[str, Any] = {"type": "text", "text": ""}
        if key[0] == "thinking":
            block = {"type": "thinking", "thinking": "", "signature": ""}
        return [*self._start(key, block), self._delta(payload)]

    def _tool_index(self, call: Mapping[str, Any], position: int) -> int:
        index = call.get("index")
        if isinstance(index, int):
            return index
        # Some servers omit index: a new id means a new call, otherwise continue the open one.
        call_id = call.get("id")
        if isinstance(call_id, str) and call_id not in self._tool_ids.values():
            return max(self._tool_ids, default=-1) + 1
        if self._open is not None and self._open[0] == "tool":
            return self._open[1]
        return position

    def _tool_delta(self, call: Mapping[str, Any], position: int) -> list[Event]:
        index = self._tool_index(call, position)
        fn = call.get("function") or {}
        events: list[Event] = []
        if self._open != ("tool", index):
            if index in self._tool_ids:
                # A fragment for an already closed block cannot be delivered; Anthropic
                # blocks never reopen. OpenAI never interleaves calls, so this is rare.
                return []
            tool_id = str(call.get("id") or f"toolu_{self._message_id}_{index}")
            self._tool_ids[index] = tool_id
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": tool_id,
                "name": fn.get("name") or "",
                "input": {},
            }
            events = self._start(("tool", index), block)
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            events.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        return events
