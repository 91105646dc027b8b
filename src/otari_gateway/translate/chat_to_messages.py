"""Serve an OpenAI Chat Completions client from an Anthropic Messages upstream.

Two pieces: the request body going up and the non-streaming response coming back; the
stream converter is in ``chat_stream.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from otari_gateway.translate.errors import TranslationError
from otari_gateway.translate.reasoning import thinking_for_effort
from otari_gateway.translate.reported import reported_model
from otari_gateway.translate.structured_output import forced, json_content, json_tool
from otari_gateway.translate.thinking_blocks import (
    missing_replayed_thinking,
    reasoning_fields,
    replay_blocks,
    thinking_setting,
)
from otari_gateway.translate.usage import chat_usage, usage_from_messages

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    # Anthropic paused a long turn and continues it when the answer is sent back: the
    # answer is unfinished, which OpenAI says only with "length".
    "pause_turn": "length",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_TOOL_CHOICES: dict[str, dict[str, Any]] = {
    "auto": {"type": "auto"},
    "required": {"type": "any"},
    "none": {"type": "none"},
}


def finish_reason(stop_reason: Any, *, json_answer: bool = False) -> str:
    """Map an Anthropic ``stop_reason`` to an OpenAI ``finish_reason``; for a ``json_answer``
    the forced tool call is the answer itself, which ends as ``stop``."""
    if json_answer and stop_reason == "tool_use":
        return "stop"
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


# --- request -------------------------------------------------------------------------


def chat_request_to_messages(
    body: Mapping[str, Any], model: str, *, default_max_tokens: int = 4096
) -> dict[str, Any]:
    """Build an Anthropic Messages request body from an OpenAI Chat Completions one.

    ``model`` is the bare upstream model name. ``reasoning_effort`` becomes extended
    thinking (``translate/reasoning.py``), and an Anthropic-shaped ``thinking`` is kept;
    assistant ``thinking_blocks`` go back as thinking blocks (``translate/thinking_blocks.py``).
    A JSON ``response_format`` becomes a forced tool (``translate/structured_output.py``).
    OpenAI-only knobs (``n``, ``logprobs``, ``seed``, penalties, ``stream_options``...) are
    dropped.
    """
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise TranslationError("n > 1 is not supported by this model: it returns one choice")
    system, messages = _convert_messages(body.get("messages"))
    out: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": _max_tokens(body, default_max_tokens),
    }
    if system:
        simple = len(system) == 1 and set(system[0]) == {"type", "text"}
        out["system"] = system[0]["text"] if simple else system
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = list(stop)
    if body.get("stream") is not None:
        out["stream"] = bool(body["stream"])
    if body.get("tools"):
        out["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(body["tools"])]
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    answer_tool = json_tool(body)
    if answer_tool is not None:
        out["tools"] = [answer_tool]
        out["tool_choice"] = forced(answer_tool)
    user = body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    _add_thinking(out, body)
    return out


def _add_thinking(out: dict[str, Any], body: Mapping[str, Any]) -> None:
    thinking = thinking_setting(body) or thinking_for_effort(
        body.get("reasoning_effort"), out["max_tokens"]
    )
    if thinking is None:
        return
    if thinking.get("type") == "disabled":
        out["thinking"] = thinking
        return
    # Anthropic refuses thinking with a forced tool call, and refuses a tool-result turn
    # whose assistant turn lacks its thinking blocks, which is what a client that keeps no
    # thinking_blocks (a plain OpenAI SDK user) always sends: such a turn is answered
    # without thinking rather than failed, as that client could never fix its history.
    forced = out.get("tool_choice", {}).get("type") in ("any", "tool")
    if forced or missing_replayed_thinking(out["messages"]):
        return
    out["thinking"] = thinking
    # Nor does it take sampling changes with thinking on.
    out.pop("temperature", None)
    out.pop("top_p", None)


def _max_tokens(body: Mapping[str, Any], default: int) -> int:
    # max_completion_tokens is OpenAI's newer name and wins when a client sends both.
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


def _convert_messages(raw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not isinstance(raw, list) or not raw:
        raise TranslationError("messages must be a non-empty list")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, Mapping):
            raise TranslationError(f"{where} must be an object")
        role = msg.get("role")
        if role in ("system", "developer"):
            # Anthropic has no mid-conversation system turns; all of them are hoisted.
            system.extend(_text_blocks(msg.get("content"), f"{where}.content"))
            continue
        if role == "user":
            anthropic_role, blocks = "user", _user_blocks(msg.get("content"), f"{where}.content")
        elif role == "assistant":
            anthropic_role, blocks = "assistant", _assistant_blocks(msg, where)
        elif role == "tool":
            anthropic_role, blocks = "user", [_tool_result(msg, where)]
        else:
            raise TranslationError(f"{where}.role {role!r} is not supported")
        if not blocks:
            continue
        # Anthropic requires strict user/assistant alternation, so same-role runs merge.
        if turns and turns[-1]["role"] == anthropic_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": anthropic_role, "content": blocks})
    if not turns:
        raise TranslationError("messages must contain a non-empty user or assistant message")
    return system, turns


def _text_block(part: Mapping[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": part.get("text") or ""}
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _text_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """Text-only content; empty strings are skipped because Anthropic rejects them."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise TranslationError(f"{where} must be a string or a list of parts")
    blocks = []
    for j, part in enumerate(content):
        if not isinstance(part, Mapping) or part.get("type") not in ("text", "refusal"):
            raise TranslationError(f"{where}[{j}] must be a text part")
        text = part.get("text") if part.get("type") == "text" else part.get("refusal")
        if text:
            blocks.append(_text_block({**part, "text": text}))
    return blocks


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return _text_blocks(content, where)
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            blocks.extend(_text_blocks([part], where))
        elif kind == "image_url":
            blocks.append(_image_block(part, f"{where}[{j}]"))
        elif kind == "file":
            blocks.append(_document_block(part, f"{where}[{j}]"))
        else:
            raise TranslationError(f"{where}[{j}]: content part type {kind!r} is not supported")
    return blocks


def _split_data_url(url: str, where: str) -> tuple[str, str]:
    header, sep, data = url.removeprefix("data:").partition(",")
    if not sep or not header.endswith(";base64"):
        raise TranslationError(f"{where}: only base64 data: URLs are supported")
    return header.split(";", 1)[0], data


def _image_block(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str) or not url:
        raise TranslationError(f"{where}.image_url.url is missing")
    if url.startswith("data:"):
        media_type, data = _split_data_url(url, where)
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif url.startswith(("http://", "https://")):
        source = {"type": "url", "url": url}
    else:
        raise TranslationError(f"{where}: image URL must be http(s) or a data: URL")
    block: dict[str, Any] = {"type": "image", "source": source}
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _document_block(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    file = part.get("file")
    data_url = file.get("file_data") if isinstance(file, Mapping) else None
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise TranslationError(f"{where}: only inline file_data (data: URL) files are supported")
    media_type, data = _split_data_url(data_url, where)
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": data},
    }


def _assistant_blocks(msg: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    # Signed thinking blocks lead, as Anthropic issued them; a bare reasoning_content is
    # dropped, as Anthropic only accepts thinking that carries the signature it issued.
    blocks = replay_blocks(msg.get("thinking_blocks"))
    blocks += _text_blocks(msg.get("content"), f"{where}.content")
    for k, call in enumerate(msg.get("tool_calls") or []):
        blocks.append(_tool_use_block(call, f"{where}.tool_calls[{k}]"))
    return blocks


def _tool_use_block(call: Any, where: str) -> dict[str, Any]:
    fn = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
        raise TranslationError(f"{where} must be a function call with a name")
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{where}.id is missing")
    return {
        "type": "tool_use",
        "id": call_id,
        "name": fn["name"],
        "input": _parse_arguments(fn.get("arguments"), f"{where}.function.arguments"),
    }


def _parse_arguments(raw: Any, where: str) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    try:
        parsed = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise TranslationError(f"{where} is not valid JSON") from exc
    if not isinstance(parsed, dict):
        raise TranslationError(f"{where} must be a JSON object")
    return parsed


def _tool_result(msg: Mapping[str, Any], where: str) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{where}.tool_call_id is missing")
    content = msg.get("content")
    result: Any = content if isinstance(content, str) else _text_blocks(content, where)
    return {"type": "tool_result", "tool_use_id": call_id, "content": result or ""}


def _tool(tool: Any, where: str) -> dict[str, Any]:
    fn = tool.get("function") if isinstance(tool, Mapping) else None
    if not isinstance(fn, Mapping) or tool.get("type") != "function" or not fn.get("name"):
        raise TranslationError(f"{where}: only function tools with a name are supported")
    out: dict[str, Any] = {
        "name": fn["name"],
        "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
    }
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice is None:
        out = None
    elif isinstance(choice, str) and choice in _TOOL_CHOICES:
        out = dict(_TOOL_CHOICES[choice])
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, Mapping) else None
        if not isinstance(name, str):
            raise TranslationError("tool_choice.function.name is missing")
        out = {"type": "tool", "name": name}
    else:
        raise TranslationError(f"tool_choice {choice!r} is not supported")
    if parallel is False:
        out = out or {"type": "auto"}
        # Anthropic's "none" choice takes no options.
        if out["type"] != "none":
            out["disable_parallel_tool_use"] = True
    return out


# --- response ------------------------------------------------------------------------


def _dump(value: Any) -> str:
    return orjson.dumps(value).decode()


def messages_response_to_chat(
    resp: Mapping[str, Any], model: str, *, created: int, json_answer: bool = False
) -> dict[str, Any]:
    """Build a ``chat.completion`` from an Anthropic Message; ``model`` names the model when
    the upstream does not. A ``json_answer`` (the request's ``response_format`` asked for
    JSON) is the forced tool's input, as the content."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in resp.get("content") or []:
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": _dump(block.get("input") or {}),
                    },
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    message.update(reasoning_fields(resp.get("content")))
    if json_answer:
        message["content"] = json_content(resp.get("content"))
    elif calls:
        message["tool_calls"] = calls
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason(resp.get("stop_reason"), json_answer=json_answer),
    }
    return {
        "id": resp.get("id"),
        "object": "chat.completion",
        "created": created,
        "model": reported_model(resp, model),
        "choices": [choice],
        "usage": chat_usage(usage_from_messages(resp.get("usage"))),
    }
