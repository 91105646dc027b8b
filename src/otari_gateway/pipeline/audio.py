"""The length of uploaded audio, where it can be read without decoding: WAV files.

A WAV header states its byte rate and the size of its samples, so the duration is one
division. Compressed formats (MP3, M4A, Ogg …) would need a decoder; their duration comes
only from the upstream's answer.
"""

from __future__ import annotations

import struct
from decimal import Decimal

_RIFF_HEADER = 12
_CHUNK_HEADER = 8
_BYTE_RATE = struct.Struct("<I")
_BYTE_RATE_OFFSET = 8  # within the fmt chunk: format(2) channels(2) sample rate(4)
_SECONDS = Decimal("0.001")


def wav_seconds(data: bytes) -> Decimal | None:
    """Seconds of audio in a RIFF/WAVE file (to the millisecond), or None if not one."""
    if len(data) < _RIFF_HEADER or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    byte_rate = 0
    offset = _RIFF_HEADER
    while offset + _CHUNK_HEADER <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = _BYTE_RATE.unpack_from(data, offset + 4)
        body = offset + _CHUNK_HEADER
        has_rate = size >= _BYTE_RATE_OFFSET + 4 and body + _BYTE_RATE_OFFSET + 4 <= len(data)
        if chunk_id == b"fmt " and has_rate:
            (byte_rate,) = _BYTE_RATE.unpack_from(data, body + _BYTE_RATE_OFFSET)
        elif chunk_id == b"data":
            if not byte_rate:
                return None
            # A streamed WAV may declare a placeholder size; only the bytes present count.
            samples = min(size, len(data) - body)
            return (Decimal(samples) / byte_rate).quantize(_SECONDS)
        offset = body + size + (size & 1)
    return None
