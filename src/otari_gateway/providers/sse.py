"""Incremental server-sent-events splitting for upstream streams.

The relay forwards each event's bytes unchanged, so the splitter keeps the raw event and
only parses its ``event:`` and ``data:`` fields on demand.
"""

from __future__ import annotations

from dataclasses import dataclass

_SEPARATOR = b"\n\n"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One event: its raw bytes (terminated by a blank line), name and joined data."""

    raw: bytes
    event: str
    data: bytes


def parse_event(raw: bytes) -> SSEEvent:
    """Read the ``event`` and ``data`` fields of one raw event block."""
    if raw.startswith(b"data: ") and raw.find(b"\n", 6) == len(raw) - 2:
        # The common shape (one data line, OpenAI-style): no line loop needed.
        return SSEEvent(raw=raw, event="", data=raw[6:-2])
    name = ""
    data_lines: list[bytes] = []
    for line in raw.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            data_lines.append(value[1:] if value.startswith(b" ") else value)
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
    return SSEEvent(raw=raw, event=name, data=b"\n".join(data_lines))


class SSESplitter:
    """Feed arbitrary byte chunks, get back complete events in order."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        buffer = self._buffer + chunk
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buffer.find(_SEPARATOR, start)
            if end < 0:
                break
            block = buffer[start:end]
            start = end + 2
            event = parse_event(block + _SEPARATOR)
            if event.data or event.event:
                events.append(event)
        self._buffer = buffer[start:]
        return events

    def flush(self) -> list[SSEEvent]:
        """Whatever complete-looking event remains at end of stream."""
        rest, self._buffer = self._buffer.strip(b"\n"), b""
        event = parse_event(rest + _SEPARATOR)
        return [event] if event.data or event.event else []
