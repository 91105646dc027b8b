"""OpenAPI declarations for the routes that read raw bodies.

The generation routes read raw bodies for speed, and file uploads and batch creation
read theirs with the body size limit, so FastAPI cannot derive their schemas; they are
declared here (generation paths merged into the generated document, the others attached
to their FastAPI routes).
"""

from __future__ import annotations

from typing import Any

_ERROR = {
    "type": "object",
    "description": "OpenAI error envelope (Anthropic's on /v1/messages)",
    "properties": {"error": {"type": "object"}},
}


def _body(
    required: list[str],
    properties: dict[str, Any],
    description: str,
    media_type: str = "application/json",
) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            media_type: {
                "schema": {
                    "type": "object",
                    "description": description,
                    "required": required,
                    "properties": properties,
                    "additionalProperties": True,
                }
            }
        },
    }


def _responses(streams: bool, raw: dict[str, Any] | None = None) -> dict[str, Any]:
    ok: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if streams:
        ok["text/event-stream"] = {"schema": {"type": "string"}}
    ok.update(raw or {})
    error = {"content": {"application/json": {"schema": _ERROR}}}
    return {
        "200": {"description": "Success", "content": ok},
        **{
            str(status): {"description": text, **error}
            for status, text in (
                (400, "Invalid request, or rejected by the provider"),
                (401, "Missing or invalid credential"),
                (403, "Not permitted"),
                (404, "Unknown model at the provider"),
                (413, "Request body too large"),
                (429, "Rate limited (Retry-After kept)"),
                (502, "Provider failed or rejected the gateway's credentials"),
                (504, "Provider timed out"),
            )
        },
    }


_MODEL = {"type": "string", "description": "provider:model, provider/model, or an alias"}
_STREAM = {"type": "boolean"}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_TEXT = {"schema": {"type": "string"}}

GENERATION_PATHS: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "post": {
            "tags": ["generation"],
            "summary": "OpenAI Chat Completions",
            "operationId": "chat_completions",
            "requestBody": _body(
                ["model", "messages"],
                {"model": _MODEL, "messages": {"type": "array", "minItems": 1}, "stream": _STREAM},
                "OpenAI chat completion request; unknown fields pass through to the provider",
            ),
            "responses": _responses(streams=True),
        }
    },
    "/v1/messages": {
        "post": {
            "tags": ["generation"],
            "summary": "Anthropic Messages",
            "operationId": "messages",
            "requestBody": _body(
                ["model", "messages", "max_tokens"],
                {
                    "model": _MODEL,
                    "messages": {"type": "array", "minItems": 1},
                    "max_tokens": {"type": "integer", "minimum": 1},
                    "stream": _STREAM,
                },
                "Anthropic Messages request; translated for non-Anthropic providers",
            ),
            "responses": _responses(streams=True),
        }
    },
    "/v1/messages/count_tokens": {
        "post": {
            "tags": ["generation"],
            "summary": "Estimate the input tokens of a Messages request (no upstream call)",
            "operationId": "count_tokens",
            "requestBody": _body(
                ["model", "messages"],
                {"model": _MODEL, "messages": {"type": "array", "minItems": 1}},
                "Anthropic count_tokens request",
            ),
            "responses": _responses(streams=False),
        }
    },
    "/v1/responses": {
        "post": {
            "tags": ["generation"],
            "summary": "OpenAI Responses",
            "operationId": "responses",
            "requestBody": _body(
                ["model"],
                {"model": _MODEL, "input": {}, "stream": _STREAM},
                "OpenAI Responses request; bridged onto Chat Completions or Anthropic Messages "
                "for providers without a Responses API (no previous_response_id there)",
            ),
            "responses": _responses(streams=True),
        }
    },
    "/v1/embeddings": {
        "post": {
            "tags": ["generation"],
            "summary": "OpenAI Embeddings",
            "operationId": "embeddings",
            "requestBody": _body(
                ["model", "input"], {"model": _MODEL, "input": {}}, "OpenAI embeddings request"
            ),
            "responses": _responses(streams=False),
        }
    },
    "/v1/moderations": {
        "post": {
            "tags": ["generation"],
            "summary": "OpenAI Moderations (billed per request)",
            "operationId": "moderations",
            "requestBody": _body(
                ["model", "input"],
                {"model": _MODEL, "input": {}},
                "OpenAI moderation request; 'model' is required to pick the provider",
            ),
            "responses": _responses(streams=False),
        }
    },
    "/v1/rerank": {
        "post": {
            "tags": ["generation"],
            "summary": "Rerank documents (Cohere/Jina shape, as vLLM and Jina serve it)",
            "operationId": "rerank",
            "requestBody": _body(
                ["model", "query", "documents"],
                {
                    "model": _MODEL,
                    "query": {"type": "string"},
                    "documents": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "oneOf": [
                                {"type": "string"},
                                {
                                    "type": "object",
                                    "required": ["text"],
                                    "properties": {"text": {"type": "string"}},
                                },
                            ]
                        },
                    },
                    "top_n": {"type": "integer", "minimum": 1},
                },
                "Rerank request; the answer is {id, model, results: [{index, relevance_score, "
                "document?}], usage}, best first",
            ),
            "responses": _responses(streams=False),
        }
    },
    "/v1/images/generations": {
        "post": {
            "tags": ["generation"],
            "summary": "OpenAI image generation (billed per image, plus any tokens reported)",
            "operationId": "images_generations",
            "requestBody": _body(
                ["model", "prompt"],
                {
                    "model": _MODEL,
                    "prompt": {"type": "string"},
                    "n": {"type": "integer", "minimum": 1},
                },
                "OpenAI image generation request (not streamed)",
            ),
            "responses": _responses(streams=False),
        }
    },
    "/v1/audio/speech": {
        "post": {
            "tags": ["generation"],
            "summary": "OpenAI text to speech (audio relayed with its Content-Type)",
            "operationId": "audio_speech",
            "requestBody": _body(
                ["model", "input", "voice"],
                {"model": _MODEL, "input": {"type": "string"}, "voice": {}},
                "OpenAI speech request; billed per request and per character of 'input'",
            ),
            "responses": _responses(
                streams=False, raw={"audio/*": _BINARY, "application/octet-stream": _BINARY}
            ),
        }
    },
    "/v1/audio/transcriptions": {
        "post": {
            "tags": ["generation"],
            "summary": "OpenAI speech to text (multipart upload; billed per second of audio)",
            "operationId": "audio_transcriptions",
            "requestBody": _body(
                ["model", "file"],
                {
                    "model": _MODEL,
                    "file": {"type": "string", "format": "binary"},
                    "response_format": {
                        "type": "string",
                        "enum": ["json", "text", "srt", "verbose_json", "vtt"],
                    },
                },
                "OpenAI transcription request; the form is relayed with the bare model",
                "multipart/form-data",
            ),
            "responses": _responses(streams=False, raw={"text/plain": _TEXT}),
        }
    },
}

FILE_UPLOAD_BODY = _body(
    ["file", "purpose"],
    {
        "file": {"type": "string", "format": "binary"},
        "purpose": {"type": "string", "description": "batch, user_data, fine-tune, ..."},
        "provider": {
            "type": "string",
            "description": "gateway-only: the OpenAI-compatible instance to store a non-batch "
            "file with (needed when there is more than one); a batch file's lines name it",
        },
        "user": {"type": "string", "description": "with the master key: the owner"},
    },
    "OpenAI file upload. A 'batch' JSONL file's lines must all name one "
    "'<provider>:<model>' in body.model; the upstream gets the bare model",
    "multipart/form-data",
)

BATCH_CREATE_BODY = _body(
    ["input_file_id", "endpoint", "completion_window"],
    {
        "input_file_id": {"type": "string", "description": "one of the caller's batch files"},
        "endpoint": {"type": "string", "examples": ["/v1/chat/completions"]},
        "completion_window": {"type": "string", "examples": ["24h"]},
        "metadata": {"type": "object"},
        "user": {"type": "string", "description": "with the master key: the owner"},
    },
    "OpenAI batch creation; billed once when finished, at the model's price × "
    "batch_price_multiplier",
)


def object_responses(description: str) -> dict[int | str, dict[str, Any]]:
    """The answers of a files or batches route: an OpenAI object, or an error envelope."""
    error = {"content": {"application/json": {"schema": _ERROR}}}
    return {
        200: {"description": description},
        **{
            status: {"description": text, **error}
            for status, text in (
                (400, "Invalid request, or rejected by the provider"),
                (401, "Missing or invalid credential"),
                (403, "Not permitted"),
                (404, "No such object for this user"),
                (413, "Request body too large"),
                (502, "Provider failed"),
            )
        },
    }


SECURITY_SCHEMES = {
    "OtariKey": {"type": "apiKey", "in": "header", "name": "Otari-Key"},
    "BearerAuth": {"type": "http", "scheme": "bearer"},
    "AnthropicKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
}


def merge_generation_paths(document: dict[str, Any]) -> dict[str, Any]:
    paths = document.setdefault("paths", {})
    for path, operations in GENERATION_PATHS.items():
        paths.setdefault(path, {}).update(operations)
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    document["security"] = [{"OtariKey": []}, {"BearerAuth": []}, {"AnthropicKey": []}]
    return document
