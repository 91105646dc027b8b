"""The fake OpenAI API's non-chat surfaces, on their real wire formats.

* ``POST /v1/moderations``: one result per input; an input containing ``FLAGGED_WORD`` is
  flagged (category ``violence``), others are not. No usage, as on OpenAI; a ``user``
  field is refused (400) as OpenAI refuses fields an endpoint does not have.
* ``POST /v1/rerank`` (vLLM / Jina shape): a document's score is the share of the query's
  words it contains; results best first, cut to ``top_n``, with ``document.text`` when
  ``return_documents`` is not false; ``usage.total_tokens`` = words of the query once per
  document plus the documents' words.
* ``POST /v1/images/generations``: ``n`` images (default 1), as ``url`` or ``b64_json``
  per ``response_format``; ``gpt-image-*`` models add a token ``usage`` (prompt words in,
  ``IMAGE_OUTPUT_TOKENS`` per image out) and always answer ``b64_json``.
* ``POST /v1/audio/speech``: ``speech_bytes(...)`` with the Content-Type of
  ``response_format`` (mp3 by default).
* ``POST /v1/audio/transcriptions`` (multipart): the text is ``transcript_text(...)``;
  ``json`` carries ``usage`` of type ``duration`` (whole seconds, rounded up) for whisper
  models and of type ``tokens`` for ``gpt-4o-*`` ones; ``verbose_json`` carries the
  ``duration`` to the millisecond; ``text`` / ``srt`` / ``vtt`` are plain text. The
  duration is read from a WAV upload with the standard ``wave`` module (0 otherwise).
"""

from __future__ import annotations

import base64
import io
import math
import time
import wave
from collections.abc import Mapping
from typing import Any

from tests.fakes import content as c
from tests.fakes.server import (
    FakeUpstream,
    FormUpload,
    Handler,
    JsonReply,
    RawReply,
    RecordedRequest,
    Reply,
)

FLAGGED_WORD = "attack"
IMAGE_OUTPUT_TOKENS = 100
FAKE_PNG = b"\x89PNG\r\n\x1a\nfake-image"
AUDIO_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
_CATEGORIES = ("harassment", "hate", "self-harm", "sexual", "violence")


def speech_bytes(text: str, voice: str, response_format: str) -> bytes:
    """The audio the fake 'speaks' (not playable; deterministic, and binary)."""
    return b"FAKEAUDIO\x00\xff" + f"{response_format}:{voice}:{text}".encode()


def transcript_text(filename: str, size: int) -> str:
    return f"transcript of {filename} ({size} bytes)"


def wav_duration(data: bytes) -> float:
    """Seconds of a PCM WAV file; 0.0 for anything else."""
    try:
        with wave.open(io.BytesIO(data)) as audio:
            return audio.getnframes() / audio.getframerate()
    except (wave.Error, EOFError):
        return 0.0


class OpenAIMediaRoutes(FakeUpstream):
    """Base of ``FakeOpenAI`` holding these routes; errors use its ``error_reply``."""

    form_paths = frozenset({"/v1/audio/transcriptions"})

    def media_routes(self) -> Mapping[tuple[str, str], Handler]:
        return {
            ("POST", "/v1/moderations"): self._moderations,
            ("POST", "/v1/rerank"): self._rerank,
            ("POST", "/v1/images/generations"): self._images,
            ("POST", "/v1/audio/speech"): self._speech,
            ("POST", "/v1/audio/transcriptions"): self._transcriptions,
        }

    def _model_error(self, model: Any) -> JsonReply | None:
        if not isinstance(model, str) or not model:
            return self.error_reply(400, "you must provide a model parameter")
        if c.is_missing_model(model):
            return self.error_reply(
                404, f"The model `{model}` does not exist or you do not have access to it."
            )
        return None

    def _moderations(self, request: RecordedRequest) -> Reply:
        body = request.json_object()
        if (bad := self._model_error(body.get("model"))) is not None:
            return bad
        raw = body.get("input")
        inputs = raw if isinstance(raw, list) else [raw]
        if "user" in body:
            return self.error_reply(400, "Unrecognized request argument supplied: user")
        results = []
        for item in inputs:
            text = item if isinstance(item, str) else c.text_of([item])
            flagged = FLAGGED_WORD in text
            results.append(
                {
                    "flagged": flagged,
                    "categories": {name: flagged and name == "violence" for name in _CATEGORIES},
                    "category_scores": {
                        name: 0.9 if flagged and name == "violence" else 0.001
                        for name in _CATEGORIES
                    },
                    "category_applied_input_types": {name: ["text"] for name in _CATEGORIES},
                }
            )
        number = self.next_id()
        return JsonReply({"id": f"modr-fake{number}", "model": body["model"], "results": results})

    def _rerank(self, request: RecordedRequest) -> Reply:
        body = request.json_object()
        if (bad := self._model_error(body.get("model"))) is not None:
            return bad
        query, documents = body.get("query"), body.get("documents")
        if not isinstance(query, str) or not isinstance(documents, list) or not documents:
            return self.error_reply(400, "query and documents are required")
        texts = [d["text"] if isinstance(d, dict) else str(d) for d in documents]
        scored = c.rerank_scores(query, texts)
        top_n = body.get("top_n") or len(scored)
        results: list[dict[str, Any]] = []
        for score, index in scored[:top_n]:
            result: dict[str, Any] = {"index": index, "relevance_score": score}
            if body.get("return_documents", True) is not False:
                result["document"] = {"text": texts[index]}
            results.append(result)
        tokens = c.rerank_tokens(query, texts)
        return JsonReply(
            {
                "id": f"rerank-fake{self.next_id()}",
                "model": body["model"],
                "results": results,
                "usage": {"total_tokens": tokens},
            }
        )

    def _images(self, request: RecordedRequest) -> Reply:
        body = request.json_object()
        if (bad := self._model_error(body.get("model"))) is not None:
            return bad
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return self.error_reply(400, "Missing required parameter: 'prompt'.")
        n = int(body.get("n") or 1)
        token_priced = body["model"].startswith("gpt-image")
        as_b64 = token_priced or body.get("response_format") == "b64_json"
        number = self.next_id("image")
        data = []
        for index in range(n):
            if as_b64:
                image = {"b64_json": base64.b64encode(FAKE_PNG + bytes([index])).decode()}
            else:
                image = {"url": f"https://images.fake.invalid/{number}/{index}.png"}
            data.append({**image, "revised_prompt": prompt})
        reply: dict[str, Any] = {"created": int(time.time()), "data": data}
        if token_priced:
            words = c.count_words([prompt])
            reply["usage"] = {
                "input_tokens": words,
                "input_tokens_details": {"text_tokens": words, "image_tokens": 0},
                "output_tokens": IMAGE_OUTPUT_TOKENS * n,
                "total_tokens": words + IMAGE_OUTPUT_TOKENS * n,
            }
        return JsonReply(reply)

    def _speech(self, request: RecordedRequest) -> Reply:
        body = request.json_object()
        if (bad := self._model_error(body.get("model"))) is not None:
            return bad
        text, voice = body.get("input"), body.get("voice")
        if not isinstance(text, str) or not isinstance(voice, str):
            return self.error_reply(400, "input and voice are required")
        response_format = body.get("response_format") or "mp3"
        if response_format not in AUDIO_TYPES:
            return self.error_reply(400, f"Invalid response_format: {response_format}")
        audio = speech_bytes(text, voice, response_format)
        return RawReply(audio, AUDIO_TYPES[response_format])

    def _transcriptions(self, request: RecordedRequest) -> Reply:
        form = request.form or {}
        model = form.get("model")
        if (bad := self._model_error(model)) is not None:
            return bad
        upload = form.get("file")
        if not isinstance(upload, FormUpload):
            return self.error_reply(400, "Missing required parameter: 'file'.")
        text = transcript_text(upload.filename, len(upload.data))
        seconds = wav_duration(upload.data)
        response_format = form.get("response_format") or "json"
        if response_format in ("text", "srt", "vtt"):
            return RawReply(text.encode(), "text/plain; charset=utf-8")
        if response_format == "verbose_json":
            return JsonReply(
                {
                    "task": "transcribe",
                    "language": form.get("language") or "english",
                    "duration": round(seconds, 3),
                    "text": text,
                    "segments": [],
                }
            )
        if str(model).startswith("gpt-4o"):
            words = c.count_words([text])
            usage: dict[str, Any] = {
                "type": "tokens",
                "input_tokens": 2 * words,
                "input_token_details": {"text_tokens": 0, "audio_tokens": 2 * words},
                "output_tokens": words,
                "total_tokens": 3 * words,
            }
        else:
            usage = {"type": "duration", "seconds": math.ceil(seconds)}
        return JsonReply({"text": text, "usage": usage})
