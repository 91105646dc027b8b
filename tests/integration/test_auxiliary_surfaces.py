"""Moderations, rerank, images, speech and transcriptions through the real gateway.

The official ``openai`` SDK (raw HTTP for rerank, which the SDK lacks) talks to a gateway
of this module's own, in front of the fake OpenAI upstreams: answers relayed as the
upstream sent them (audio byte for byte), the bare model and the instance's key upstream,
one usage row per request with the cost the configured per-request / per-image / per-token
/ per-second prices give, and the errors of the contract. The gateway is this module's so
its prices (and ``require_pricing``) stay out of the shared stack's model listing.
"""

from __future__ import annotations

import base64
import io
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import wave
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import orjson
import pytest

from tests.fakes.openai_media import FAKE_PNG, IMAGE_OUTPUT_TOKENS, speech_bytes, transcript_text
from tests.fakes.server import FormUpload
from tests.integration.conftest import BODY_LIMIT, MASTER_KEY, Stack, create_key, priced_stack

MICRO = Decimal("0.000001")
PRICES: dict[str, dict[str, Any]] = {
    "openai:omni-moderation-latest": {"price_per_request": "0.0001"},
    "local:rerank-model": {"input_price_per_million": "2", "price_per_request": "0.001"},
    "openai:dall-e-3": {"price_per_image": "0.04"},
    "openai:gpt-image-1": {"input_price_per_million": "5", "output_price_per_million": "40"},
    "openai:tts-1": {"price_per_million_characters": "15", "price_per_request": "0.001"},
    "openai:whisper-1": {"price_per_audio_second": "0.0001"},
    "openai:gpt-4o-transcribe": {
        "input_price_per_million": "2.5",
        "output_price_per_million": "10",
    },
    "openai:missing-model": {"price_per_image": "0.04"},
    "anthropic:claude-sonnet-4-5": {"input_price_per_million": 3, "output_price_per_million": 15},
}
ROW_WITHIN = 2.0


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with priced_stack(tmp_path_factory.mktemp("auxiliary"), PRICES) as stack:
        yield stack


@pytest.fixture
def user_key(gw: Stack) -> tuple[str, str]:
    """A fresh user and its virtual key, so each test reads only its own usage rows."""
    for fake in (gw.openai_fake, gw.local_fake, gw.anthropic_fake):
        fake.reset()
    user_id = f"aux-{uuid.uuid4().hex[:10]}"
    return user_id, str(create_key(gw.base_url, user_id=user_id)["key"])


def _client(gw: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=20)


def _post(
    gw: Stack, path: str, body: bytes, *, key: str, content_type: str = "application/json"
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        gw.base_url + path,
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": content_type},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _error(status_body: tuple[int, dict[str, str], bytes]) -> tuple[int, dict[str, Any]]:
    status, _, body = status_body
    parsed = orjson.loads(body)
    assert set(parsed) == {"error"}, parsed
    return status, parsed["error"]


def _rows(gw: Stack, user_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The user's usage rows, polled until ``count`` are there (they are written in batches)."""
    query = urllib.parse.urlencode({"user_id": user_id})
    deadline = time.monotonic() + ROW_WITHIN
    while True:
        request = urllib.request.Request(
            f"{gw.base_url}/v1/usage?{query}", headers={"Authorization": f"Bearer {MASTER_KEY}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            rows: list[dict[str, Any]] = orjson.loads(response.read())
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) == count, rows
            return rows
        time.sleep(0.05)


def _row(gw: Stack, user_id: str) -> dict[str, Any]:
    return _rows(gw, user_id)[0]


def _cost(row: dict[str, Any]) -> Decimal:
    return Decimal(str(row["cost"])).quantize(MICRO)


def _wav(seconds: float, rate: int = 16000) -> bytes:
    """A real mono 16-bit PCM WAV file of silence."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(rate)
        audio.writeframes(b"\x00\x00" * int(seconds * rate))
    return buffer.getvalue()


# --------------------------------------------------------------------------- moderations


def test_moderations_through_the_sdk(gw: Stack, user_key: tuple[str, str]) -> None:
    user_id, key = user_key
    with _client(gw, key) as client:
        result = client.moderations.create(
            model="openai:omni-moderation-latest", input=["good morning", "plan an attack"]
        )
    assert result.id.startswith("modr-fake")
    assert [r.flagged for r in result.results] == [False, True]
    assert result.results[1].categories.violence is True
    request = gw.openai_fake.last_request
    assert request.path == "/v1/moderations"
    assert request.headers["authorization"] == f"Bearer {gw.openai_fake.api_key}"
    assert request.json == {
        "model": "omni-moderation-latest",
        "input": ["good morning", "plan an attack"],
    }
    row = _row(gw, user_id)
    assert (row["endpoint"], row["model"], row["provider"]) == (
        "moderations",
        "omni-moderation-latest",
        "openai",
    )
    assert (row["status"], row["status_code"], row["total_tokens"]) == ("success", 200, 0)
    assert _cost(row) == Decimal("0.0001")


def test_master_key_names_the_user_which_is_not_sent_upstream(gw: Stack) -> None:
    for fake in (gw.openai_fake, gw.local_fake):
        fake.reset()
    user_id = f"aux-master-{uuid.uuid4().hex[:8]}"
    with _client(gw, MASTER_KEY) as client:
        result = client.moderations.create(
            model="openai:omni-moderation-latest", input="hello", extra_body={"user": user_id}
        )
        with pytest.raises(openai.BadRequestError) as refused:
            client.moderations.create(model="openai:omni-moderation-latest", input="hello")
    assert result.results[0].flagged is False
    assert "user" not in gw.openai_fake.last_request.json_object()
    assert refused.value.code == "user_required"
    assert _cost(_row(gw, user_id)) == Decimal("0.0001")


# --------------------------------------------------------------------------- rerank


def test_rerank_relays_results_best_first_and_bills_reported_tokens(
    gw: Stack, user_key: tuple[str, str]
) -> None:
    user_id, key = user_key
    body = {
        "model": "local:rerank-model",
        "query": "capital of france",
        "documents": [
            "berlin is in germany",
            {"text": "paris is the capital of france"},
            "the capital of spain",
        ],
        "top_n": 2,
        "user": user_id,
    }
    status, headers, raw = _post(gw, "/v1/rerank", orjson.dumps(body), key=key)
    assert status == 200, raw
    assert headers["content-type"] == "application/json"
    answer = orjson.loads(raw)
    assert [r["index"] for r in answer["results"]] == [1, 2]
    assert answer["results"][0]["relevance_score"] == 1.0
    assert answer["results"][0]["document"] == {"text": "paris is the capital of france"}
    # 3 query words × 3 documents + 4 + 6 + 4 document words (the fake's count).
    assert answer["usage"] == {"total_tokens": 23}
    sent = gw.local_fake.last_request
    assert sent.path == "/v1/rerank"
    assert sent.headers["authorization"] == "Bearer sk-fake-local"
    assert sent.json == {k: v for k, v in {**body, "model": "rerank-model"}.items() if k != "user"}
    row = _row(gw, user_id)
    assert (row["endpoint"], row["model"], row["prompt_tokens"]) == ("rerank", "rerank-model", 23)
    assert _cost(row) == Decimal(23) * 2 / 1_000_000 + Decimal("0.001")


# --------------------------------------------------------------------------- images


def test_images_billed_per_generated_image(gw: Stack, user_key: tuple[str, str]) -> None:
    user_id, key = user_key
    with _client(gw, key) as client:
        result = client.images.generate(
            model="openai:dall-e-3", prompt="a red fox", n=2, size="1024x1024", user=user_id
        )
    assert [image.url for image in result.data or []] == [
        "https://images.fake.invalid/1/0.png",
        "https://images.fake.invalid/1/1.png",
    ]
    sent = gw.openai_fake.last_request.json_object()
    assert sent == {
        "model": "dall-e-3",
        "prompt": "a red fox",
        "n": 2,
        "size": "1024x1024",
        "user": user_id,
    }
    row = _row(gw, user_id)
    assert (row["endpoint"], row["model"], row["status"]) == ("images", "dall-e-3", "success")
    assert _cost(row) == Decimal("0.08")


def test_token_priced_image_model_bills_its_reported_tokens(
    gw: Stack, user_key: tuple[str, str]
) -> None:
    user_id, key = user_key
    with _client(gw, key) as client:
        result = client.images.generate(model="openai:gpt-image-1", prompt="a small blue boat")
    assert result.data is not None
    assert base64.b64decode(result.data[0].b64_json or "") == FAKE_PNG + b"\x00"
    assert result.usage is not None and result.usage.output_tokens == IMAGE_OUTPUT_TOKENS
    row = _row(gw, user_id)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (4, IMAGE_OUTPUT_TOKENS)
    assert _cost(row) == (Decimal(4) * 5 + Decimal(IMAGE_OUTPUT_TOKENS) * 40) / 1_000_000


def test_image_hold_covers_every_requested_image(gw: Stack) -> None:
    """Budget 0.10: one image (0.04) fits, three (0.12) cannot be held."""
    budget = _management(gw, "POST", "/v1/budgets", {"max_budget": 0.10})
    user_id = f"aux-budget-{uuid.uuid4().hex[:8]}"
    _management(gw, "POST", "/v1/users", {"user_id": user_id, "budget_id": budget["budget_id"]})
    key = str(create_key(gw.base_url, user_id=user_id)["key"])
    with _client(gw, key) as client:
        client.images.generate(model="openai:dall-e-3", prompt="one fox")
        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.images.generate(model="openai:dall-e-3", prompt="three foxes", n=3)
    assert "budget" in refused.value.message
    rows = _rows(gw, user_id, 2)
    assert sorted(row["status_code"] for row in rows) == [200, 403]
    assert sum(_cost(row) for row in rows) == Decimal("0.04")


def _management(gw: Stack, method: str, path: str, body: Any) -> Any:
    request = urllib.request.Request(
        gw.base_url + path,
        data=orjson.dumps(body),
        headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return orjson.loads(response.read())


# --------------------------------------------------------------------------- speech


def test_speech_audio_is_relayed_byte_for_byte(gw: Stack, user_key: tuple[str, str]) -> None:
    user_id, key = user_key
    with _client(gw, key) as client:
        audio = client.audio.speech.create(
            model="openai:tts-1",
            voice="alloy",
            input="hello there",
            response_format="wav",
            extra_body={"user": user_id},
        )
        assert audio.response.headers["content-type"] == "audio/wav"
        assert audio.content == speech_bytes("hello there", "alloy", "wav")
        default = client.audio.speech.create(model="openai:tts-1", voice="nova", input="hi")
        assert default.response.headers["content-type"] == "audio/mpeg"
        assert default.read() == speech_bytes("hi", "nova", "mp3")
    sent = gw.openai_fake.requests[0].json_object()
    assert sent == {
        "model": "tts-1",
        "voice": "alloy",
        "input": "hello there",
        "response_format": "wav",
    }
    rows = _rows(gw, user_id, 2)
    assert {row["endpoint"] for row in rows} == {"audio_speech"}
    # $15 per million characters of input, plus $0.001 per request: 11 and 2 characters.
    assert sorted(_cost(row) for row in rows) == [Decimal("0.00103"), Decimal("0.001165")]


# --------------------------------------------------------------------------- transcriptions


def test_transcription_relays_the_upload_and_bills_the_reported_duration(
    gw: Stack, user_key: tuple[str, str]
) -> None:
    user_id, key = user_key
    clip = _wav(1.5)
    with _client(gw, key) as client:
        result = client.audio.transcriptions.create(
            model="openai:whisper-1", file=("clip.wav", clip, "audio/wav"), language="en"
        )
    assert result.text == transcript_text("clip.wav", len(clip))
    sent = gw.openai_fake.last_request
    assert sent.path == "/v1/audio/transcriptions"
    assert sent.headers["authorization"] == f"Bearer {gw.openai_fake.api_key}"
    assert sent.form is not None
    assert sent.form["model"] == "whisper-1"
    assert sent.form["language"] == "en"
    assert sent.form["file"] == FormUpload("clip.wav", "audio/wav", clip)
    row = _row(gw, user_id)
    assert (row["endpoint"], row["model"], row["status"]) == (
        "audio_transcriptions",
        "whisper-1",
        "success",
    )
    # json answers usage {"type": "duration", "seconds": 2} (the fake rounds up).
    assert _cost(row) == Decimal("0.0002")


def test_verbose_transcription_bills_its_duration_and_keeps_repeated_fields(
    gw: Stack, user_key: tuple[str, str]
) -> None:
    user_id, key = user_key
    clip = _wav(2.25)
    with _client(gw, key) as client:
        result = client.audio.transcriptions.create(
            model="openai:whisper-1",
            file=("long.wav", clip, "audio/wav"),
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert result.duration == 2.25
    form = gw.openai_fake.last_request.form
    assert form is not None and form["timestamp_granularities[]"] == ["word", "segment"]
    assert _cost(_row(gw, user_id)) == Decimal("0.000225")


def test_text_transcription_bills_the_wav_header_duration(
    gw: Stack, user_key: tuple[str, str]
) -> None:
    user_id, key = user_key
    clip = _wav(3.0)
    with _client(gw, key) as client:
        text = client.audio.transcriptions.create(
            model="openai:whisper-1", file=("three.wav", clip, "audio/wav"), response_format="text"
        )
    assert text.strip() == transcript_text("three.wav", len(clip))
    assert _cost(_row(gw, user_id)) == Decimal("0.0003")


def test_token_priced_transcription(gw: Stack, user_key: tuple[str, str]) -> None:
    user_id, key = user_key
    clip = _wav(0.5)
    with _client(gw, key) as client:
        result = client.audio.transcriptions.create(
            model="openai:gpt-4o-transcribe", file=("short.wav", clip, "audio/wav")
        )
    words = len(result.text.split())
    row = _row(gw, user_id)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (2 * words, words)
    assert _cost(row) == (Decimal(2 * words) * Decimal("2.5") + Decimal(words) * 10) / 1_000_000


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/moderations", {"input": "hi"}, "model"),
        ("/v1/moderations", {"model": "openai:omni-moderation-latest"}, "input"),
        ("/v1/moderations", {"model": "openai:omni-moderation-latest", "input": 3}, "input"),
        ("/v1/rerank", {"model": "local:rerank-model", "query": "q"}, "documents"),
        ("/v1/rerank", {"model": "local:rerank-model", "query": "", "documents": ["a"]}, "query"),
        (
            "/v1/rerank",
            {"model": "local:rerank-model", "query": "q", "documents": ["a", {"txt": "b"}]},
            "documents[1]",
        ),
        (
            "/v1/rerank",
            {"model": "local:rerank-model", "query": "q", "documents": ["a"], "top_n": 0},
            "top_n",
        ),
        ("/v1/images/generations", {"model": "openai:dall-e-3", "prompt": 5}, "prompt"),
        ("/v1/images/generations", {"model": "openai:dall-e-3", "prompt": "x", "n": "2"}, "n"),
        (
            "/v1/images/generations",
            {"model": "openai:dall-e-3", "prompt": "x", "stream": True},
            "stream",
        ),
        ("/v1/audio/speech", {"model": "openai:tts-1", "input": "hi"}, "voice"),
        ("/v1/audio/speech", {"model": "openai:tts-1", "voice": "alloy"}, "input"),
        (
            "/v1/audio/speech",
            {"model": "openai:tts-1", "voice": "alloy", "input": "hi", "stream_format": "sse"},
            "stream_format",
        ),
    ],
)
def test_invalid_bodies_are_refused_before_any_upstream_call(
    gw: Stack, user_key: tuple[str, str], path: str, body: dict[str, Any], param: str
) -> None:
    _, key = user_key
    status, error = _error(_post(gw, path, orjson.dumps(body), key=key))
    assert status == 400
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert gw.openai_fake.requests == [] and gw.local_fake.requests == []


def test_malformed_json_is_a_400(gw: Stack, user_key: tuple[str, str]) -> None:
    _, key = user_key
    for path in ("/v1/moderations", "/v1/rerank", "/v1/images/generations", "/v1/audio/speech"):
        status, error = _error(_post(gw, path, b'{"model": ', key=key))
        assert status == 400
        assert "not valid JSON" in error["message"]


def test_transcription_form_errors(gw: Stack, user_key: tuple[str, str]) -> None:
    _, key = user_key
    form = "multipart/form-data; boundary=abc"
    no_file = b'--abc\r\nContent-Disposition: form-data; name="model"\r\n\r\nopenai:whisper-1'
    status, error = _error(
        _post(
            gw, "/v1/audio/transcriptions", no_file + b"\r\n--abc--\r\n", key=key, content_type=form
        )
    )
    assert (status, error["param"]) == (400, "file")
    status, error = _error(
        _post(gw, "/v1/audio/transcriptions", no_file, key=key, content_type=form)
    )
    assert status == 400 and "closing boundary" in error["message"]
    with _client(gw, key) as client, pytest.raises(openai.BadRequestError) as streamed:
        client.audio.transcriptions.create(
            model="openai:whisper-1", file=("a.wav", _wav(0.1), "audio/wav"), stream=True
        )
    assert streamed.value.param == "stream"
    status, error = _error(
        _post(gw, "/v1/audio/transcriptions", b'{"model": "openai:whisper-1"}', key=key)
    )
    assert status == 400 and "multipart/form-data" in error["message"]
    assert gw.openai_fake.requests == []


def test_upload_over_the_body_limit_is_a_413(gw: Stack, user_key: tuple[str, str]) -> None:
    _, key = user_key
    with _client(gw, key) as client, pytest.raises(openai.APIStatusError) as refused:
        client.audio.transcriptions.create(
            model="openai:whisper-1", file=("big.wav", _wav(BODY_LIMIT / 32000 + 1), "audio/wav")
        )
    assert refused.value.status_code == 413
    assert gw.openai_fake.requests == []


def test_unsupported_provider_is_a_400_naming_it(gw: Stack, user_key: tuple[str, str]) -> None:
    user_id, key = user_key
    with _client(gw, key) as client, pytest.raises(openai.BadRequestError) as refused:
        client.images.generate(model="anthropic:claude-sonnet-4-5", prompt="a cat")
    assert refused.value.code == "unsupported_endpoint"
    assert "'anthropic' does not support" in refused.value.message
    assert gw.anthropic_fake.requests == []
    assert _row(gw, user_id)["status_code"] == 400


def test_unpriced_and_disallowed_models_are_refused(gw: Stack, user_key: tuple[str, str]) -> None:
    _, key = user_key
    limited = str(
        create_key(
            gw.base_url, user_id=f"aux-{uuid.uuid4().hex[:8]}", allowed_models=["openai:tts-1"]
        )["key"]
    )
    with _client(gw, key) as client, pytest.raises(openai.APIStatusError) as unpriced:
        client.audio.speech.create(model="openai:speech-unpriced", voice="alloy", input="hi")
    with _client(gw, limited) as client, pytest.raises(openai.PermissionDeniedError) as denied:
        client.moderations.create(model="openai:omni-moderation-latest", input="hi")
    assert unpriced.value.status_code == 402
    assert denied.value.code == "model_not_allowed"
    assert gw.openai_fake.requests == []


def test_upstream_errors_are_mapped_and_recorded(gw: Stack, user_key: tuple[str, str]) -> None:
    user_id, key = user_key
    gw.openai_fake.fail_next(429)
    gw.openai_fake.fail_next(500)
    with _client(gw, key) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            client.audio.speech.create(model="openai:tts-1", voice="alloy", input="hi")
        with pytest.raises(openai.InternalServerError) as failed:
            client.audio.transcriptions.create(
                model="openai:whisper-1", file=("a.wav", _wav(0.2), "audio/wav")
            )
        with pytest.raises(openai.NotFoundError):
            client.images.generate(model="openai:missing-model", prompt="x")
    assert limited.value.response.headers["retry-after"] == "1"
    assert failed.value.status_code == 502
    rows = _rows(gw, user_id, 3)
    assert sorted(row["status_code"] for row in rows) == [404, 429, 502]
    assert {row["status"] for row in rows} == {"error"}
    assert sum(_cost(row) for row in rows) == 0
