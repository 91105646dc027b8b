"""Per-surface checks of the few fields the contract names; everything else passes through.

Full schema validation of every chat body would be a large share of a Python gateway's
CPU, so only what routing and the contract depend on is checked here (API.md: model,
messages, stream, and for Messages ``max_tokens``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from otari_gateway.errors import InvalidRequest, UpstreamError
from otari_gateway.pipeline.form import FormFile

GATEWAY_ONLY_FIELDS = ("guardrails", "mcp_servers", "max_tool_iterations")
# The README's built-in tools, run by the gateway rather than the model's provider.
_BUILT_IN_TOOLS = frozenset({"otari_code_execution", "otari_web_search"})


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


def _gateway_features(body: Mapping[str, Any]) -> None:
    """Refuse what this gateway cannot do yet rather than call the provider without it.

    A guardrail in ``block`` mode promises the provider never sees flagged input; forwarding
    the request unchecked would break that promise silently, so every request naming one
    gets the answer the contract gives when the guardrails service is down (502). MCP
    servers and the built-in tools would be dropped or sent to a provider that rejects them.
    """
    guardrails = body.get("guardrails")
    if guardrails is not None:
        if not isinstance(guardrails, list) or not all(
            isinstance(entry, dict) and isinstance(entry.get("profile"), str)
            for entry in guardrails
        ):
            raise InvalidRequest(
                "'guardrails' must be an array of objects with a string 'profile'",
                param="guardrails",
            )
        if guardrails:
            raise UpstreamError(
                "guardrails were requested but no guardrails service is available to this "
                "gateway; the request was not sent to the provider",
                param="guardrails",
                code="guardrails_unavailable",
            )
    if body.get("mcp_servers"):
        raise InvalidRequest("'mcp_servers' is not supported by this gateway", param="mcp_servers")
    tools = body.get("tools")
    if isinstance(tools, list):
        for index, tool in enumerate(tools):
            if isinstance(tool, dict) and tool.get("type") in _BUILT_IN_TOOLS:
                raise InvalidRequest(
                    f"built-in tool '{tool['type']}' is not available on this gateway",
                    param=f"tools[{index}]",
                )


def check_chat(body: Mapping[str, Any]) -> tuple[str, bool]:
    """``/v1/chat/completions``: returns (model, stream)."""
    model = _model(body)
    _gateway_features(body)
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
    _gateway_features(body)
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
    _gateway_features(body)
    value = body.get("input")
    if value is not None and not isinstance(value, str | list):
        raise InvalidRequest("'input' must be a string or an array", param="input")
    if value is None and body.get("previous_response_id") is None:
        raise InvalidRequest(
            "'input' is required", param="input", code="missing_required_parameter"
        )
    if body.get("background") is True:
        # Its usage is known only when it finishes, after the answer that would bill it.
        raise InvalidRequest(
            "background responses are not supported: the gateway bills a response when it answers",
            param="background",
            code="unsupported_parameter",
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


def _required(body: Mapping[str, Any], name: str) -> Any:
    value = body.get(name)
    if value is None:
        raise InvalidRequest(f"'{name}' is required", param=name, code="missing_required_parameter")
    return value


def _text(body: Mapping[str, Any], name: str) -> str:
    value = _required(body, name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"'{name}' must be a non-empty string", param=name)
    return value


def _positive_int(body: Mapping[str, Any], name: str) -> None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidRequest(f"'{name}' must be a positive integer", param=name)


def _not_streamed(body: Mapping[str, Any], path: str) -> None:
    # Form fields arrive as text, so a multipart "true" counts as asking for a stream too.
    if body.get("stream") in (True, "true", "True"):
        raise InvalidRequest(
            f"streaming is not supported on {path} by the gateway; omit 'stream'", param="stream"
        )


def check_moderations(body: Mapping[str, Any]) -> str:
    """``/v1/moderations``: returns the model (required here: it selects the provider)."""
    model = _model(body)
    value = _required(body, "input")
    if not isinstance(value, str) and not (isinstance(value, list) and value):
        raise InvalidRequest("'input' must be a string or a non-empty array", param="input")
    return model


def check_rerank(body: Mapping[str, Any]) -> str:
    """``/v1/rerank``: returns the model."""
    model = _model(body)
    _text(body, "query")
    documents = _required(body, "documents")
    if not isinstance(documents, list) or not documents:
        raise InvalidRequest("'documents' must be a non-empty array", param="documents")
    for index, document in enumerate(documents):
        text = document.get("text") if isinstance(document, dict) else document
        if not isinstance(text, str):
            where = f"documents[{index}]"
            raise InvalidRequest(
                f"'{where}' must be a string or an object with a string 'text'", param=where
            )
    _positive_int(body, "top_n")
    return model


def check_images(body: Mapping[str, Any]) -> str:
    """``/v1/images/generations``: returns the model."""
    model = _model(body)
    _text(body, "prompt")
    _positive_int(body, "n")
    _not_streamed(body, "/v1/images/generations")
    return model


def check_speech(body: Mapping[str, Any]) -> str:
    """``/v1/audio/speech``: returns the model."""
    model = _model(body)
    _text(body, "input")
    voice = _required(body, "voice")
    if not isinstance(voice, str | dict):
        raise InvalidRequest("'voice' must be a string or an object", param="voice")
    if body.get("stream_format") == "sse":
        raise InvalidRequest(
            "stream_format 'sse' is not supported by the gateway; the audio is relayed whole",
            param="stream_format",
        )
    return model


def check_transcription(form: Mapping[str, Any]) -> str:
    """``/v1/audio/transcriptions`` (form fields): returns the model."""
    model = _model(form)
    if not isinstance(_required(form, "file"), FormFile):
        raise InvalidRequest("'file' must be an uploaded audio file", param="file")
    _not_streamed(form, "/v1/audio/transcriptions")
    return model
