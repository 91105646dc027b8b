"""Turn a Chat Completions stream into the OpenAI Responses event sequence.

Chunks go in one at a time; out come ``response.created`` and ``response.in_progress``
first, then per output item ``response.output_item.added`` → content/argument deltas →
their ``.done`` events → ``response.output_item.done``, and finally (from ``terminal``,
once the caller has settled) ``response.completed`` or ``response.incomplete`` carrying
the whole response and its usage, or (from ``error``) an ``error`` event. Every event has a
``sequence_number`` that counts from 0.

Reasoning (``translate/responses_reasoning.py``) streams as OpenAI's reasoning summaries:
``response.reasoning_summary_part.added`` → ``response.reasoning_summary_text.delta``… →
``.text.done`` → ``.part.done`` inside its item. A signed thinking block (a
``thinking_blocks`` delta, sent whole when the block ends) closes the summary part, so the
next block's text opens a new one; the blocks reach the client in the item's
``encrypted_content`` on ``response.output_item.done``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from otari_gateway.translate.reported import opens_stream, read_chat_chunk, reported_model
from otari_gateway.translate.responses_reasoning import reasoning_item, summary_part
from otari_gateway.translate.responses_to_chat import (
    call_item,
    finished_response,
    item_id,
    text_item,
)
from otari_gateway.translate.thinking_blocks import replay_blocks
from otari_gateway.translate.usage import usage_from_chat
from otari_gateway.usage import Usage

Event = dict[str, Any]


@dataclass
class _Item:
    """One output item being streamed: a message, a reasoning item or a function call."""

    kind: str
    item_id: str
    output_index: int
    # Text of the message, the call's arguments, or the reasoning's open summary part.
    text: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""
    summary: list[str] = field(default_factory=list)
    blocks: list[dict[str, Any]] = field(default_factory=list)
    part_open: bool = False


class ChatToResponsesStream:
    """Stateful converter for one stream; ``envelope`` is from ``response_envelope``."""

    def __init__(self, envelope: Mapping[str, Any]) -> None:
        self._envelope = dict(envelope)
        self._base = str(envelope["id"]).removeprefix("resp_")
        self._sequence = 0
        self._started = False
        self._output: dict[int, dict[str, Any]] = {}
        self._open: _Item | None = None
        self._calls: dict[int, _Item] = {}
        self._finish_reason: Any = None
        self._usage: Mapping[str, Any] | None = None

    @property
    def usage(self) -> Usage:
        """Usage from the upstream's trailing usage chunk (zero until it arrives)."""
        return usage_from_chat(self._usage)

    @property
    def usage_final(self) -> bool:
        return self._usage is not None

    def start(self, model: str | None = None) -> list[Event]:
        """``response.created`` and ``response.in_progress`` (naming ``model`` when given,
        else the envelope's); idempotent."""
        if self._started:
            return []
        self._started = True
        if model:
            self._envelope["model"] = model
        return [
            self._event("response.created", response=self._envelope),
            self._event("response.in_progress", response=self._envelope),
        ]

    def feed(self, chunk: Mapping[str, Any]) -> list[Event]:
        choices, usage = read_chat_chunk(chunk)
        if usage is not None:
            self._usage = usage
        if not self._started:
            if not opens_stream(choices, self._usage):
                return []
            self._envelope["model"] = reported_model(chunk, self._envelope["model"])
        events = self.start()
        for choice in choices:
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                events.extend(self._reasoning_delta(reasoning))
            if isinstance(delta.get("thinking_blocks"), list):
                events.extend(self._thinking_blocks(delta["thinking_blocks"]))
            content = delta.get("content")
            if isinstance(content, str) and content:
                events.extend(self._text_delta(content))
            for call in delta.get("tool_calls") or []:
                if isinstance(call, Mapping):
                    events.extend(self._call_delta(call))
            if choice.get("finish_reason") is not None:
                self._finish_reason = choice["finish_reason"]
        return events

    def finish(self) -> list[Event]:
        """Close every item still open, in output order."""
        events = self.start()
        events.extend(self._close_open())
        for item in sorted(self._calls.values(), key=lambda i: i.output_index):
            events.extend(self._close_call(item))
        self._calls.clear()
        return events

    def error(self, code: str, message: str, param: str | None) -> list[Event]:
        """An ``error`` event in sequence, after ``response.created`` if none was sent yet:
        the openai SDK's stream helper refuses any other event ahead of that one."""
        events = self.start()
        events.append(self._event("error", code=code, message=message, param=param))
        return events

    def terminal(self, usage: Usage, *, completed_at: int) -> Event:
        """The last event: the finished response with the usage that was billed."""
        output = [self._output[index] for index in sorted(self._output)]
        response = finished_response(
            self._envelope, output, self._finish_reason, usage, completed_at=completed_at
        )
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        return self._event(kind, response=response)

    # --- events ----------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def _next_index(self) -> int:
        return len(self._output) + len(self._calls) + (1 if self._open else 0)

    def _text_delta(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self._open is None or self._open.kind != "message":
            events.extend(self._close_open())
            events.extend(self._open_message())
        item = self._open
        assert item is not None
        item.text.append(text)
        events.append(
            self._event(
                "response.output_text.delta",
                **self._where(item),
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return events

    def _open_message(self) -> list[Event]:
        index = self._next_index()
        item = _Item("message", item_id("msg", self._base, index), index)
        self._open = item
        added = {**text_item(item.item_id, "", "in_progress"), "content": []}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [
            self._event("response.output_item.added", output_index=index, item=added),
            self._event(
                "response.content_part.added", **self._where(item), content_index=0, part=part
            ),
        ]

    def _reasoning_delta(self, text: str) -> list[Event]:
        events = self._open_reasoning()
        item = self._open
        assert item is not None
        where = {**self._where(item), "summary_index": len(item.summary)}
        if not item.part_open:
            item.part_open = True
            events.append(
                self._event("response.reasoning_summary_part.added", **where, part=summary_part(""))
            )
        item.text.append(text)
        events.append(self._event("response.reasoning_summary_text.delta", **where, delta=text))
        return events

    def _thinking_blocks(self, raw: list[Any]) -> list[Event]:
        """A thinking block has ended: its summary part is done and it joins the item."""
        blocks = replay_blocks(raw)
        if not blocks and (self._open is None or self._open.kind != "reasoning"):
            return []
        events = self._open_reasoning()
        item = self._open
        assert item is not None
        item.blocks.extend(blocks)
        events.extend(self._close_summary_part(item))
        return events

    def _open_reasoning(self) -> list[Event]:
        if self._open is not None and self._open.kind == "reasoning":
            return []
        events = self._close_open()
        index = self._next_index()
        item = _Item("reasoning", item_id("rs", self._base, index), index)
        self._open = item
        added = reasoning_item(item.item_id, [], [], "in_progress")
        events.append(self._event("response.output_item.added", output_index=index, item=added))
        return events

    def _close_summary_part(self, item: _Item) -> list[Event]:
        if not item.part_open:
            return []
        item.part_open = False
        text = "".join(item.text)
        item.text.clear()
        where = {**self._where(item), "summary_index": len(item.summary)}
        item.summary.append(text)
        return [
            self._event("response.reasoning_summary_text.done", **where, text=text),
            self._event("response.reasoning_summary_part.done", **where, part=summary_part(text)),
        ]

    def _close_open(self) -> list[Event]:
        item = self._open
        if item is None:
            return []
        self._open = None
        if item.kind == "reasoning":
            events = self._close_summary_part(item)
            done = reasoning_item(item.item_id, item.summary, item.blocks)
        else:
            text = "".join(item.text)
            done = text_item(item.item_id, text)
            events = [
                self._event(
                    "response.output_text.done",
                    **self._where(item),
                    content_index=0,
                    text=text,
                    logprobs=[],
                ),
                self._event(
                    "response.content_part.done",
                    **self._where(item),
                    content_index=0,
                    part=done["content"][0],
                ),
            ]
        self._output[item.output_index] = done
        events.append(
            self._event("response.output_item.done", output_index=item.output_index, item=done)
        )
        return events

    def _call_delta(self, call: Mapping[str, Any]) -> list[Event]:
        position = call.get("index", 0)
        position = position if isinstance(position, int) else 0
        raw_fn = call.get("function")
        fn: Mapping[str, Any] = raw_fn if isinstance(raw_fn, Mapping) else {}
        events: list[Event] = []
        item = self._calls.get(position)
        if item is None:
            events.extend(self._close_open())
            index = self._next_index()
            call_id = call.get("id")
            item = _Item(
                "function_call",
                item_id("fc", self._base, index),
                index,
                call_id=call_id
                if isinstance(call_id, str) and call_id
                else item_id("call", self._base, index),
                name=str(fn.get("name") or ""),
            )
            self._calls[position] = item
            added = call_item(item.item_id, item.call_id, item.name, "", "in_progress")
            events.append(self._event("response.output_item.added", output_index=index, item=added))
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            item.text.append(arguments)
            events.append(
                self._event(
                    "response.function_call_arguments.delta", **self._where(item), delta=arguments
                )
            )
        return events

    def _close_call(self, item: _Item) -> list[Event]:
        arguments = "".join(item.text)
        done = call_item(item.item_id, item.call_id, item.name, arguments)
        self._output[item.output_index] = done
        return [
            self._event(
                "response.function_call_arguments.done",
                **self._where(item),
                name=item.name,
                arguments=arguments,
            ),
            self._event("response.output_item.done", output_index=item.output_index, item=done),
        ]

    @staticmethod
    def _where(item: _Item) -> dict[str, Any]:
        return {"item_id": item.item_id, "output_index": item.output_index}
