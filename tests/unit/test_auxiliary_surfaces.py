"""The non-token meters and the pieces behind moderations, rerank, images, speech and
transcriptions: costs, genai-prices units, usage readers, WAV durations, forms, checks."""

from __future__ import annotations

import io
import struct
import wave
from decimal import Decimal
from typing import Any

import pytest

from otari_gateway.billing.cost import Price, cost_of, estimate_cost
from otari_gateway.billing.pricing import genai_price, price_from_fields
from otari_gateway.errors import InvalidRequest
from otari_gateway.pipeline import validate
from otari_gateway.pipeline.audio import wav_seconds
from otari_gateway.pipeline.form import FormFile, encode_form, form_content_type, parse_form
from otari_gateway.translate.usage import (
    usage_from_images,
    usage_from_rerank,
    usage_from_transcription,
)
from otari_gateway.usage import Usage

D = Decimal


def _wav(frames: int, rate: int = 8000, channels: int = 1, width: int = 2) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(channels)
        audio.setsampwidth(width)
        audio.setframerate(rate)
        audio.writeframes(b"\x00" * frames * channels * width)
    return buffer.getvalue()


# --------------------------------------------------------------------------- money


def test_each_unit_is_billed_at_its_own_rate() -> None:
    price = Price(
        per_request=D("0.001"),
        per_image=D("0.04"),
        per_audio_second=D("0.0001"),
        per_million_characters=D("15"),
    )
    assert not price.is_free
    assert cost_of(Usage(images=3), price) == D("0.121")
    assert cost_of(Usage(audio_seconds=D("12.5")), price) == D("0.00225")
    # 1,000 characters at $15 per million: 0.015, plus the request.
    assert cost_of(Usage(characters=1000), price) == D("0.016")


def test_units_and_tokens_add_up() -> None:
    price = Price(input_per_million=D(5), output_per_million=D(40), per_image=D("0.01"))
    usage = Usage(prompt_tokens=10, completion_tokens=100, images=2)
    assert cost_of(usage, price) == D("0.02405")


def test_estimate_holds_the_known_units() -> None:
    price = Price(per_image=D("0.04"), per_million_characters=D("15"))
    assert estimate_cost(0, 0, price, Usage(images=3)) == D("0.12")
    assert estimate_cost(0, 0, price, Usage(characters=7)) == D("0.000105")
    assert estimate_cost(0, 0, price) == D(0)


def test_price_fields_include_characters() -> None:
    price = price_from_fields({"price_per_million_characters": 30, "price_per_request": "0.5"})
    assert (price.per_million_characters, price.per_request) == (D(30), D("0.5"))


def test_genai_prices_units_become_gateway_rates() -> None:
    speech = genai_price("openai", "tts-1")
    assert speech is not None and speech.per_million_characters == D(15)
    whisper = genai_price("openai", "whisper-1")
    assert whisper is not None
    # $0.36 per hour of audio.
    assert whisper.per_audio_second == D("0.0001")
    sonar = genai_price("perplexity", "sonar")
    assert sonar is not None and sonar.per_request is not None and sonar.per_request > 0


# --------------------------------------------------------------------------- usage readers


@pytest.mark.parametrize(
    ("usage", "tokens"),
    [
        ({"total_tokens": 23}, 23),
        ({"prompt_tokens": 7, "total_tokens": 9}, 7),
        ({"input_tokens": 5}, 5),
        ({}, 0),
        (None, 0),
    ],
)
def test_rerank_usage_counts_input(usage: dict[str, Any] | None, tokens: int) -> None:
    assert usage_from_rerank(usage) == Usage(prompt_tokens=tokens)


def test_image_usage_counts_images_and_tokens() -> None:
    assert usage_from_images({"data": [{"url": "a"}, {"url": "b"}]}) == Usage(images=2)
    reply = {"data": [{"b64_json": "x"}], "usage": {"input_tokens": 4, "output_tokens": 100}}
    assert usage_from_images(reply) == Usage(prompt_tokens=4, completion_tokens=100, images=1)
    assert usage_from_images({"data": None}) == Usage()


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"text": "x", "usage": {"type": "duration", "seconds": 9}}, Usage(audio_seconds=D(9))),
        ({"text": "x", "duration": 8.47}, Usage(audio_seconds=D("8.47"))),
        (
            {"text": "x", "usage": {"type": "tokens", "input_tokens": 14, "output_tokens": 45}},
            Usage(prompt_tokens=14, completion_tokens=45),
        ),
        ({"text": "x", "duration": -1}, Usage()),
        ({"text": "x", "duration": "NaN"}, Usage()),
        ({"text": "x", "duration": True}, Usage()),
    ],
)
def test_transcription_usage(reply: dict[str, Any], expected: Usage) -> None:
    assert usage_from_transcription(reply) == expected


# --------------------------------------------------------------------------- WAV durations


def test_wav_duration_from_the_header() -> None:
    assert wav_seconds(_wav(12000)) == D("1.500")
    assert wav_seconds(_wav(8000, rate=16000, channels=2)) == D("0.500")


def test_wav_with_extra_chunks_and_a_placeholder_data_size() -> None:
    plain = _wav(8000)
    fmt = plain[12:36]
    samples = plain[44:]
    listing = b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # odd size: one pad byte
    streamed = b"data" + struct.pack("<I", 0xFFFFFFFF) + samples
    body = b"WAVE" + fmt + listing + streamed
    assert wav_seconds(b"RIFF" + struct.pack("<I", len(body)) + body) == D("1.000")


@pytest.mark.parametrize("data", [b"", b"ID3\x04" + b"\x00" * 40, b"RIFF\x00\x00\x00\x00WAVE"])
def test_not_a_wav_has_no_duration(data: bytes) -> None:
    assert wav_seconds(data) is None


def test_truncated_fmt_chunk_has_no_duration() -> None:
    assert wav_seconds(_wav(100)[:30]) is None


# --------------------------------------------------------------------------- forms


def test_form_round_trip_keeps_order_files_and_repeated_fields() -> None:
    fields: dict[str, Any] = {
        "model": "openai:whisper-1",
        "file": FormFile("clip.wav", "audio/wav", b"RIFF\r\n--not-a-boundary\r\n\x00\xff"),
        "timestamp_granularities[]": ["word", "segment"],
        "prompt": "héllo",
    }
    raw = encode_form(fields, "r1")
    assert raw.startswith(b"--otari-r1\r\n") and raw.endswith(b"--otari-r1--\r\n")
    assert parse_form(raw, form_content_type("r1")) == fields
    assert list(parse_form(raw, form_content_type("r1"))) == list(fields)


@pytest.mark.parametrize(
    ("raw", "content_type", "message"),
    [
        (b"{}", "application/json", "takes a multipart/form-data body"),
        (b"", None, "no Content-Type"),
        (b"", "multipart/form-data", "names no boundary"),
        (b"garbage", "multipart/form-data; boundary=b", "malformed"),
        (
            b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nx',
            "multipart/form-data; boundary=b",
            "closing boundary",
        ),
        (
            b"--b\r\nContent-Disposition: attachment\r\n\r\nx\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
            "field name",
        ),
        (
            b'--b\r\nContent-Disposition: form-data; name="p"\r\n\r\n\xff\xfe\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
            "not UTF-8",
        ),
    ],
)
def test_malformed_forms_are_client_errors(
    raw: bytes, content_type: str | None, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_form(raw, content_type)


# --------------------------------------------------------------------------- checks


def test_transcription_checks() -> None:
    upload = FormFile("a.wav", "audio/wav", b"")
    assert validate.check_transcription({"model": "openai:whisper-1", "file": upload}) == (
        "openai:whisper-1"
    )
    with pytest.raises(InvalidRequest, match="'file' must be an uploaded audio file"):
        validate.check_transcription({"model": "openai:whisper-1", "file": "a.wav"})
    with pytest.raises(InvalidRequest, match="streaming is not supported"):
        validate.check_transcription({"model": "m:x", "file": upload, "stream": "true"})


def test_rerank_accepts_strings_and_text_objects() -> None:
    body = {"model": "local:r", "query": "q", "documents": ["a", {"text": "b"}], "top_n": 1}
    assert validate.check_rerank(body) == "local:r"
