"""OpenAPI declarations for the generation routes.

Those routes read raw bodies for speed, so FastAPI cannot derive their schemas; they are
declared here and merged into the generated document.
"""

from __future__ import annotations

from typing import Any

_ERROR = {
    "type": "object",
    "description": "OpenAI error envelope (Anthropic's on /v1/messages)",
    "properties": {"error": {"type": "object"}},
}


def _body(required: list[str], properties: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {
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


def _responses(streams: bool) -> dict[str, Any]:
    ok: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if streams:
        ok["text/event-stream"] = {"schema": {"type": "string"}}
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
