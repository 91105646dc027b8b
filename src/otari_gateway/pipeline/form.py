"""``multipart/form-data`` bodies (audio uploads): parsed once, re-encoded for the upstream.

The client's form is parsed into fields (text values as ``str``, uploads as ``FormFile``;
a repeated name such as ``timestamp_granularities[]`` as a list), so the pipeline can read
and rewrite ``model`` like a JSON body's. The upstream gets the same parts, in the same
order, with the bare model, under a boundary derived from the request id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from otari_gateway.errors import InvalidRequest

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FORM_MEDIA_TYPE = "multipart/form-data"
_MAX_PART_HEADERS = 8


@dataclass(frozen=True, slots=True)
class FormFile:
    """One uploaded file: its name and type as the client sent them, and its bytes."""

    filename: str
    content_type: str
    data: bytes


def form_boundary(request_id: str) -> str:
    """The boundary of the form sent upstream.

    128 random bits (the request id) cannot plausibly occur inside an uploaded file, so the
    parts need no scan for it.
    """
    return f"otari-{request_id}"


def form_content_type(request_id: str) -> str:
    return f"{FORM_MEDIA_TYPE}; boundary={form_boundary(request_id)}"


def _boundary_of(content_type: str | None) -> bytes:
    media_type, options = parse_options_header(content_type)
    if media_type.decode("latin-1").lower() != FORM_MEDIA_TYPE:
        raise InvalidRequest(
            f"this endpoint takes a {FORM_MEDIA_TYPE} body (got "
            f"'{media_type.decode('latin-1') or 'no Content-Type'}')"
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidRequest(f"the {FORM_MEDIA_TYPE} Content-Type names no boundary")
    return boundary


class _Collector:
    """Callbacks of ``MultipartParser``: gathers each part's headers and data."""

    def __init__(self) -> None:
        self.parts: list[tuple[dict[bytes, bytes], bytes]] = []
        self.ended = False
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._data: list[bytes] = []

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _begin(self) -> None:
        self._headers, self._data = {}, []

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._data.append(data[start:end])

    def _part_end(self) -> None:
        self.parts.append((self._headers, b"".join(self._data)))

    def _end(self) -> None:
        self.ended = True


def parse_form(raw: bytes, content_type: str | None) -> dict[str, Any]:
    """The form's fields by name; a malformed form is the client's error (400)."""
    collector = _Collector()
    parser = MultipartParser(
        _boundary_of(content_type), collector.callbacks(), max_header_count=_MAX_PART_HEADERS
    )
    try:
        parser.write(raw)
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidRequest(f"the {FORM_MEDIA_TYPE} body is malformed: {exc}") from None
    if not collector.ended:
        raise InvalidRequest(f"the {FORM_MEDIA_TYPE} body ends before its closing boundary")
    fields: dict[str, Any] = {}
    for headers, data in collector.parts:
        name, value = _part(headers, data)
        if name in fields:
            previous = fields[name]
            fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[name] = value
    return fields


def _part(headers: Mapping[bytes, bytes], data: bytes) -> tuple[str, str | FormFile]:
    disposition, options = parse_options_header(headers.get(b"content-disposition"))
    name = options.get(b"name")
    if disposition.lower() != b"form-data" or name is None:
        raise InvalidRequest(f"every part of a {FORM_MEDIA_TYPE} body needs a field name")
    filename = options.get(b"filename")
    if filename is None:
        try:
            return name.decode(), data.decode()
        except UnicodeDecodeError:
            raise InvalidRequest(
                f"form field '{name.decode(errors='replace')}' is not UTF-8"
            ) from None
    content_type = headers.get(b"content-type", b"application/octet-stream")
    return name.decode(errors="replace"), FormFile(
        filename.decode(errors="replace"), content_type.decode("latin-1"), data
    )


def _quoted(value: str) -> str:
    # How browsers escape names in Content-Disposition (the HTML form encoding algorithm).
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def encode_form(fields: Mapping[str, Any], request_id: str) -> bytes:
    """The fields as a form under ``form_boundary(request_id)``; lists become repeated parts."""
    delimiter = b"--" + form_boundary(request_id).encode()
    out: list[bytes] = []
    for name, value in fields.items():
        for item in value if isinstance(value, list) else (value,):
            disposition = f'form-data; name="{_quoted(name)}"'
            if isinstance(item, FormFile):
                disposition += f'; filename="{_quoted(item.filename)}"'
                head = f"Content-Disposition: {disposition}\r\nContent-Type: {item.content_type}"
                data = item.data
            else:
                head = f"Content-Disposition: {disposition}"
                data = str(item).encode()
            out += (delimiter, b"\r\n", head.encode(), b"\r\n\r\n", data, b"\r\n")
    out += (delimiter, b"--\r\n")
    return b"".join(out)
