"""Serve an Anthropic Messages client from an OpenAI-compatible Chat Completions upstream.

Two pieces: the request body going up and the non-streaming response coming back; the
stream converter is in ``messages_stream.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from otari_gateway.translate.errors import TranslationError
from otari_gateway.translate.reasoning import (
    effort_for_thinking,
    openai_fixed_sampling,
    openai_reasons,
)
from otari_gateway.translate.reported import reported_model
from otari_gateway.translate.usage import messages_usage, usage_from_chat

STOP_REASONS: dict[str, str] = {
    # OpenAI does not say whether "stop" came from a stop sequence, so it is end_turn.
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

_TOOL_CHOICES: dict[str, str] = {"auto": "auto", "any": "required", "none": "none"}


def stop_reason(finish_reason: Any, *, has_tool_calls: bool = False, refused: bool = False) -> str:
    """Map an OpenAI ``finish_reason`` to an Anthropic ``stop_reason``.

    Several OpenAI-compatible servers answer tool calls with ``stop``; Anthropic clients
    only run tools on ``tool_use``, so tool calls win over a plain stop. OpenAI ends a
    ``refused`` answer (one that carries a ``refusal``) with ``stop`` too, which Anthropic
    calls ``refusal``.
    """
    if refused and finish_reason in (None, "stop"):
        return "refusal"
    if has_tool_calls and finish_reason in (None, "stop"):
        return "tool_use"
    return (
        STOP_REASONS.get(finish_reason, "end_turn")
        if isinstance(finish_reason, str)
        else "end_turn"
    )


def message_id_for(chat_id: Any) -> str:
    """A stable Anthropic-style message id derived from a chat completion id."""
    text = chat_id if isinstance(chat_id, str) and chat_id else "unknown"
    return text if text.startswith("msg_") else f"msg_{text}"


# --- request -------------------------------------------------------------------------


def messages_request_to_chat(
    body: Mapping[str, Any], model: str, *, openai_platform: bool = False
) -> dict[str, Any]:
    """Build a Chat Completions request body from an Anthropic Messages one.

    ``model`` is the bare upstream model name; ``openai_platform`` says the upstream is
    OpenAI's own API rather than a compatible server (``Capabilities.openai_platform``).
    ``thinking`` becomes ``reasoning_effort`` (``translate/reasoning.py``); Anthropic-only
    fields (``top_k``, ``cache_control`` markers...) are dropped.
    """
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise TranslationError("messages must be a non-empty list")
    messages: list[dict[str, Any]] = []
    system = _system_text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for i, msg in enumerate(raw):
        messages.extend(_convert_message(msg, f"messages[{i}]"))
    out: dict[str, Any] = {"model": model, "messages": messages}
    # OpenAI's reasoning models refuse max_tokens, while many compatible servers know only
    # max_tokens: each gets the name it accepts.
    limit = "max_completion_tokens" if openai_platform else "max_tokens"
    fields = [("max_tokens", limit)]
    # Anthropic clients send a temperature as a matter of course; OpenAI's reasoning models
    # answer 400 to any but the default, so there they keep their own sampling.
    if not (openai_platform and openai_fixed_sampling(model)):
        fields += [("temperature", "temperature"), ("top_p", "top_p")]
    for src, dst in fields:
        if body.get(src) is not None:
            out[dst] = body[src]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    if body.get("stream"):
        out["stream"] = True
        # Without this the upstream never reports usage on a stream.
        out["stream_options"] = {"include_usage": True}
    if body.get("tools"):
        out["tools"] = [_function_tool(t, f"tools[{i}]") for i, t in enumerate(body["tools"])]
        out.update(_tool_choice(body.get("tool_choice")))
    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, Mapping) else None
    if isinstance(user, str) and user:
        out["user"] = user
    effort = effort_for_thinking(body.get("thinking"))
    if effort is not None and (not openai_platform or openai_reasons(model)):
        out["reasoning_effort"] = effort
    return out


def _system_text(system: Any) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    if not isinstance(system, list):
        raise TranslationError("system must be a string or a list of text blocks")
    return "\n\n".join(_block_text(block, f"system[{i}]") for i, block in enumerate(system))


def _block_text(block: Any, where: str) -> str:
    if not isinstance(block, Mapping) or block.get("type") != "text":
        raise TranslationError(f"{where} must be a text block")
    text = block.get("text")
    return text if isinstance(text, str) else ""


def _convert_message(msg: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(msg, Mapping):
        raise TranslationError(f"{where} must be an object")
    role, content = msg.get("role"), msg.get("content")
    if role not in ("user", "assistant"):
        raise TranslationError(f"{where}.role {role!r} is not supported")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise TranslationError(f"{where}.content must be a string or a list of blocks")
    if role == "user":
        return _user_messages(content, f"{where}.content")
    return _assistant_messages(content, f"{where}.content")


def _user_messages(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    """Tool results become ``tool`` messages ahead of the rest of the user turn."""
    tool_messages: list[dict[str, Any]] = []
    tool_images: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "tool_result":
            message, images = _tool_message(block, f"{where}[{j}]")
            tool_messages.append(message)
            tool_images.extend(images)
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            parts.append(_content_part(block, f"{where}[{j}]"))
    # A tool message can only hold text, so images from tool results ride along in the
    # user message that follows the tool messages.
    user_parts = tool_images + parts
    if not user_parts:
        return tool_messages
    if len(user_parts) == 1 and user_parts[0]["type"] == "text":
        # A plain string is understood by every OpenAI-compatible server; parts are not.
        return [*tool_messages, {"role": "user", "content": user_parts[0]["text"]}]
    return [*tool_messages, {"role": "user", "content": user_parts}]


def _content_part(block: Any, where: str) -> dict[str, Any]:
    kind = block.get("type") if isinstance(block, Mapping) else None
    if kind == "text":
        return {"type": "text", "text": _block_text(block, where)}
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": _source_url(block, where)}}
    if kind == "document":
        source = block.get("source") or {}
        if source.get("type") != "base64":
            raise TranslationError(f"{where}: only base64 documents are supported")
        file = {
            "file_data": _source_url(block, where),
            "filename": block.get("title") or "document",
        }
        return {"type": "file", "file": file}
    raise TranslationError(f"{where}: content block type {kind!r} is not supported")


def _source_url(block: Mapping[str, Any], where: str) -> str:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, Mapping) else None
    if kind == "base64" and isinstance(source, Mapping):
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    if kind == "url" and isinstance(source, Mapping) and isinstance(source.get("url"), str):
        return str(source["url"])
    raise TranslationError(f"{where}: source type {kind!r} is not supported")


def _tool_message(
    block: Mapping[str, Any], where: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise TranslationError(f"{where}.tool_use_id is missing")
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for k, part in enumerate(content):
            converted = _content_part(part, f"{where}.content[{k}]")
            if converted["type"] == "text":
                texts.append(converted["text"])
            else:
                images.append(converted)
    text = "\n".join(texts)
    if block.get("is_error") is True:
        text = _error_result(text)
    message = {"role": "tool", "tool_call_id": tool_use_id, "content": text}
    return message, images


def _error_result(text: str) -> str:
    """A failed tool's result, marked so in its text: Chat's tool messages have no
    ``is_error``. ``Error:`` is how agent frameworks word a failed tool's result."""
    if text.lower().startswith("error"):
        return text
    return f"Error: {text}" if text else "Error"


def _assistant_messages(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text":
            texts.append(_block_text(block, f"{where}[{j}]"))
        elif kind == "tool_use":
            calls.append(_tool_call(block, f"{where}[{j}]"))
        elif kind not in ("thinking", "redacted_thinking"):
            # Thinking is dropped: OpenAI-compatible servers take no reasoning input.
            raise TranslationError(f"{where}[{j}]: content block type {kind!r} is not supported")
    text = "".join(texts)
    if not text and not calls:
        return []
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return [message]


def _tool_call(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    call_id, name = block.get("id"), block.get("name")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise TranslationError(f"{where}: tool_use needs an id and a name")
    arguments = orjson.dumps(block.get("input") or {}).decode()
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _function_tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
        raise TranslationError(f"{where} must be a tool with a name")
    if tool.get("type") not in (None, "custom"):
        # Server tools (web search, code execution...) only run on Anthropic's side.
        raise TranslationError(f"{where}: server tool type {tool['type']!r} is not supported")
    fn: dict[str, Any] = {
        "name": tool["name"],
        "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        fn["description"] = tool["description"]
    return {"type": "function", "function": fn}


def _tool_choice(choice: Any) -> dict[str, Any]:
    if choice is None:
        return {}
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    out: dict[str, Any] = {}
    if kind in _TOOL_CHOICES:
        out["tool_choice"] = _TOOL_CHOICES[kind]
    elif kind == "tool" and isinstance(choice, Mapping) and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise TranslationError(f"tool_choice {choice!r} is not supported")
    if isinstance(choice, Mapping) and choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False
    return out


# --- response ------------------------------------------------------------------------


def _tool_input(raw: Any) -> dict[str, Any]:
    """Arguments as an object; unparseable ones are kept under ``_raw_arguments``.

    Failing the whole (already paid for) response over one bad tool call helps nobody;
    handing the raw text on lets the client's schema check report it to the model.
    """
    if isinstance(raw, Mapping):
        return dict(raw)
    if not isinstance(raw, str) or not raw.strip():
        return {}
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": raw}
    return parsed if isinstance(parsed, dict) else {"_raw_arguments": raw}


def reasoning_text(message: Mapping[str, Any]) -> str:
    # vLLM/DeepSeek say reasoning_content; OpenRouter and newer vLLM say reasoning.
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def refusal_text(message: Mapping[str, Any]) -> str:
    """OpenAI's refusal message, in place of the content of a refused answer."""
    refusal = message.get("refusal")
    return refusal if isinstance(refusal, str) else ""


def _message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(
            p.get("text") or ""
            for p in content
            if isinstance(p, Mapping) and p.get("type") == "text"
        )
    if isinstance(content, str) and content:
        return content
    return refusal_text(message)


def chat_response_to_messages(resp: Mapping[str, Any], model: str) -> dict[str, Any]:
    """Build an Anthropic Message from a ``chat.completion``; ``model`` names the model when
    the upstream does not."""
    choices = resp.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], Mapping) else {}
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if reasoning := reasoning_text(message):
        # No signature exists for OpenAI reasoning; an empty one keeps the block well-formed.
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    if text := _message_text(message):
        content.append({"type": "text", "text": text})
    calls = [c for c in message.get("tool_calls") or [] if isinstance(c, Mapping)]
    for k, call in enumerate(calls):
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{k}",
                "name": fn.get("name") or "",
                "input": _tool_input(fn.get("arguments")),
            }
        )
    return {
        "id": message_id_for(resp.get("id")),
        "type": "message",
        "role": "assistant",
        "model": reported_model(resp, model),
        "content": content,
        "stop_reason": stop_reason(
            choice.get("finish_reason"),
            has_tool_calls=bool(calls),
            refused=bool(refusal_text(message)),
        ),
        "stop_sequence": None,
        "usage": messages_usage(usage_from_chat(resp.get("usage"))),
    }
