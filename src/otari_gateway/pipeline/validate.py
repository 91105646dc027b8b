"""Per-surface checks of the few fields the contract names; everything else passes through.

Full schema validation of every chat body would be a large share of a Python gateway's
CPU, so only what routing and the contract depend on is checked here (API.md: model,
messages, stream, and for Messages ``max_tokens``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from otari_gateway.errors import InvalidRequest

GATEWAY_ONLY_FIELDS = ("guardrails", "mcp_servers", "max_tool_iterations")


def _model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise InvalidRequest(
            "'model' is required", param="model", code="missing_required_parameter"
        )
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' must be a non-empty string", param="model")
    return model


def _stream(body: Mapping[str, Any]) -> bool:
    stream = body.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    return stream


def _messages(body: Mapping[str, Any], *, roles: frozenset[str] | None = None) -> None:
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest(
            "'messages' is required", param="messages", code="missing_required_parameter"
        )
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"'{where}' must be an object", param=where)
        role = message.get("role")
        if not isinstance(role, str):
            raise InvalidRequest(f"'{where}.role' must be a string", param=f"{where}.role")
        if roles is not None and role not in roles:
            allowed = ", ".join(sorted(roles))
            raise InvalidRequest(
                f"'{where}.role' must be one of {allowed}, got '{role}'", param=f"{where}.role"
            )


def check_chat(body: Mapping[str, Any]) -> tuple[str, bool]:
    """``/v1/chat/completions``: returns (model, stream)."""
    model = _model(body)
    _messages(body)
    stream = _stream(body)
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object", param="stream_options")
    return model, stream


_MESSAGES_ROLES = frozenset({"user", "assistant"})


def check_messages(body: Mapping[str, Any]) -> tuple[str, bool]:
    """``/v1/messages``: returns (model, stream)."""
    model = _model(body)
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise InvalidRequest("max_tokens: Field required", param="max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequest("max_tokens: must be a positive integer", param="max_tokens")
    _messages(body, roles=_MESSAGES_ROLES)
    _system(body)
    return model, _stream(body)


def _system(body: Mapping[str, Any]) -> None:
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise InvalidRequest("system: must be a string or an array of text blocks", param="system")


def check_count_tokens(body: Mapping[str, Any]) -> str:
    """``/v1/messages/count_tokens``: returns the model."""
    model = _model(body)
    _messages(body, roles=_MESSAGES_ROLES)
    _system(body)
    return model


def check_responses(body: Mapping[str, Any]) -> tuple[str, bool]:
    """``/v1/responses``: returns (model, stream)."""
    model = _model(body)
    value = body.get("input")
    if value is not None and not isinstance(value, str | list):
        raise InvalidRequest("'input' must be a string or an array", param="input")
    if value is None and body.get("previous_response_id") is None:
        raise InvalidRequest(
            "'input' is required", param="input", code="missing_required_parameter"
        )
    return model, _stream(body)


def check_embeddings(body: Mapping[str, Any]) -> str:
    """``/v1/embeddings``: returns the model."""
    model = _model(body)
    value = body.get("input")
    if value is None:
        raise InvalidRequest(
            "'input' is required", param="input", code="missing_required_parameter"
        )
    if isinstance(value, str):
        return model
    if not isinstance(value, list) or not value:
        raise InvalidRequest("'input' must be a string or a non-empty array", param="input")
    return model
