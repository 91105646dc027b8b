"""Serve an OpenAI Responses client from a Chat Completions upstream.

Two pieces: the request body going up (``responses_request_to_chat``) and the
non-streaming answer coming back (``chat_response_to_responses``); the stream converter
is in ``responses_stream.py``. Providers without a Responses API of their own (and
Anthropic, via the Chat→Messages translator) are reached this way. A bridged response is
stored nowhere, so anything that needs server-side state (``previous_response_id``,
``conversation``, ``item_reference``) is refused by name (``background`` is refused for
every provider by ``pipeline/validate.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from otari_gateway.translate.errors import TranslationError
from otari_gateway.translate.reported import reported_model
from otari_gateway.translate.responses_reasoning import (
    input_thinking,
    message_reasoning,
    reasoning_item,
)
from otari_gateway.translate.usage import responses_usage
from otari_gateway.usage import Usage

STATEFUL_FIELDS = ("previous_response_id", "conversation", "prompt")

_SIMPLE_TOOL_CHOICES = frozenset({"auto", "none", "required"})
_MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})

# finish_reason values that end a response early, with the reason Responses reports.
_INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def unsupported_stateful_field(body: Mapping[str, Any]) -> str | None:
    """The first field that needs stored responses, which a bridged request cannot have."""
    for name in STATEFUL_FIELDS:
        if body.get(name) is not None:
            return name
    return None


# --- request -------------------------------------------------------------------------


def responses_request_to_chat(
    body: Mapping[str, Any],
    model: str,
    *,
    replay_thinking: bool = False,
    openai_platform: bool = False,
) -> dict[str, Any]:
    """Build a Chat Completions body from a Responses one; ``model`` is the upstream's.

    ``store``, ``include``, ``truncation`` and ``metadata`` have no Chat equivalent and are
    dropped; the caller refuses the stateful fields first (``unsupported_stateful_field``).
    With ``replay_thinking`` (an upstream that takes Anthropic thinking blocks back), the
    signed blocks of input reasoning items become their assistant turn's
    ``thinking_blocks``; otherwise reasoning items are left out unread, as
    OpenAI-compatible servers take no reasoning input. ``openai_platform`` (OpenAI's own
    API, whose reasoning models refuse ``max_tokens``) sends the limit as
    ``max_completion_tokens``.
    """
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    messages.extend(_input_messages(body.get("input"), replay_thinking))
    if not messages:
        raise TranslationError("input must contain at least one message")
    out: dict[str, Any] = {"model": model, "messages": messages}
    limit = body.get("max_output_tokens")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        out["max_completion_tokens" if openai_platform else "max_tokens"] = limit
    for key in ("temperature", "top_p", "parallel_tool_calls", "user"):
        if body.get(key) is not None:
            out[key] = body[key]
    reasoning = body.get("reasoning")
    if isinstance(reasoning, Mapping) and isinstance(reasoning.get("effort"), str):
        out["reasoning_effort"] = reasoning["effort"]
    if body.get("tools"):
        tools = body["tools"]
        if not isinstance(tools, list):
            raise TranslationError("tools must be an array")
        out["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    if body.get("tool_choice") is not None:
        out["tool_choice"] = _tool_choice(body["tool_choice"])
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        out["response_format"] = response_format
    if body.get("stream"):
        out["stream"] = True
        # Usage is always asked for, so a bridged stream is billed exactly.
        out["stream_options"] = {"include_usage": True}
    return out


def _input_messages(raw: Any, replay_thinking: bool) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise TranslationError("input must be a string or an array of items")
    messages: list[dict[str, Any]] = []
    # Blocks of the reasoning items read since the last other item: they belong to the
    # assistant output that follows them, and to nothing else.
    thinking: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, Mapping):
            raise TranslationError(f"{where} must be an object")
        kind = item.get("type", "message")
        if kind == "reasoning":
            if replay_thinking:
                thinking.extend(input_thinking(item, where))
            continue
        if kind == "message":
            messages.append(_message(item, where))
        elif kind == "function_call":
            _append_call(messages, item, where)
        elif kind == "function_call_output":
            messages.append(_call_output(item, where))
        elif kind == "item_reference":
            raise TranslationError(
                f"{where}: item_reference needs stored responses, which this provider lacks"
            )
        else:
            raise TranslationError(f"{where}.type {kind!r} is not supported by this provider")
        if thinking and messages[-1]["role"] == "assistant":
            messages[-1].setdefault("thinking_blocks", []).extend(thinking)
        thinking = []
    return messages


def _message(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in _MESSAGE_ROLES:
        raise TranslationError(f"{where}.role {role!r} is not supported")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise TranslationError(f"{where}.content must be a string or an array of parts")
    parts = [_part(part, f"{where}.content[{j}]") for j, part in enumerate(content)]
    if role != "user":
        # Only user turns take images and files in Chat; others are plain text.
        texts = [p["text"] for p in parts if p["type"] == "text"]
        if len(texts) != len(parts):
            raise TranslationError(f"{where}: only text parts are allowed for role {role!r}")
        return {"role": role, "content": "".join(texts)}
    return {"role": role, "content": parts}


def _part(part: Any, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, Mapping) else None
    if kind in _TEXT_PARTS:
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal") or ""}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise TranslationError(
                f"{where}: input_image needs an image_url (file_id is not supported)"
            )
        image: dict[str, Any] = {"url": url}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        data = part.get("file_data")
        if not isinstance(data, str) or not data:
            raise TranslationError(
                f"{where}: input_file needs file_data (file_id is not supported)"
            )
        file: dict[str, Any] = {"file_data": data}
        if isinstance(part.get("filename"), str):
            file["filename"] = part["filename"]
        return {"type": "file", "file": file}
    raise TranslationError(f"{where}: content part type {kind!r} is not supported")


def _append_call(messages: list[dict[str, Any]], item: Mapping[str, Any], where: str) -> None:
    call_id, name = item.get("call_id"), item.get("name")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{where}.call_id is missing")
    if not isinstance(name, str) or not name:
        raise TranslationError(f"{where}.name is missing")
    arguments = item.get("arguments")
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments if isinstance(arguments, str) else "{}"},
    }
    last = messages[-1] if messages else None
    # Parallel calls are consecutive items in Responses but one assistant turn in Chat.
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
        if last.get("content") == "":
            last["content"] = None
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _call_output(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{where}.call_id is missing")
    output = item.get("output")
    if isinstance(output, list):
        parts = [_part(part, f"{where}.output[{j}]") for j, part in enumerate(output)]
        if any(p["type"] != "text" for p in parts):
            raise TranslationError(f"{where}.output: only text parts are supported")
        output = "".join(p["text"] for p in parts)
    if not isinstance(output, str):
        raise TranslationError(f"{where}.output must be a string or an array of text parts")
    return {"role": "tool", "tool_call_id": call_id, "content": output}


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, Mapping) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        raise TranslationError(
            f"{where}: tool type {kind!r} is not supported by this provider (function tools only)"
        )
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise TranslationError(f"{where}.name is missing")
    function: dict[str, Any] = {
        "name": name,
        "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        function["description"] = tool["description"]
    if tool.get("strict") is not None:
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str) and choice in _SIMPLE_TOOL_CHOICES:
        return choice
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise TranslationError("tool_choice.name is missing")
        return {"type": "function", "function": {"name": name}}
    raise TranslationError(f"tool_choice {choice!r} is not supported by this provider")


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, Mapping) else None
    if not isinstance(fmt, Mapping) or fmt.get("type") in (None, "text"):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise TranslationError(f"text.format.type {fmt.get('type')!r} is not supported")


# --- response ------------------------------------------------------------------------


def response_envelope(
    body: Mapping[str, Any], *, response_id: str, model: str, created_at: int
) -> dict[str, Any]:
    """The ``response`` object before any output: what the client asked for, echoed."""
    raw_reasoning = body.get("reasoning")
    reasoning: Mapping[str, Any] = raw_reasoning if isinstance(raw_reasoning, Mapping) else {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        # Nothing is kept, so the response says so whatever the client asked.
        "store": False,
        "temperature": body.get("temperature"),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p"),
        "truncation": "disabled",
        "usage": None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def finished_response(
    envelope: Mapping[str, Any],
    output: list[dict[str, Any]],
    finish_reason: Any,
    usage: Usage,
    *,
    completed_at: int,
) -> dict[str, Any]:
    """The final ``response`` object: status from the finish reason, usage rendered."""
    reason = _INCOMPLETE_REASONS.get(finish_reason) if isinstance(finish_reason, str) else None
    done = {**envelope, "output": output, "usage": responses_usage(usage)}
    if reason is None:
        done.update(status="completed", completed_at=completed_at)
    else:
        done.update(status="incomplete", incomplete_details={"reason": reason})
    return done


def item_id(prefix: str, base: str, output_index: int) -> str:
    """Output item ids are derived from the response id, so they are unique and stable."""
    return f"{prefix}_{base}_{output_index}"


def text_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [part],
    }


def call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def chat_response_to_responses(
    chat: Mapping[str, Any], envelope: Mapping[str, Any], usage: Usage, *, completed_at: int
) -> dict[str, Any]:
    """Build the final ``response`` from a ``chat.completion`` (its first choice), naming
    the model the upstream reported.

    ``usage`` is passed in rather than read from ``chat`` so a caller holding the
    provider's own richer usage (Anthropic cache writes) keeps it.
    """
    choices = chat.get("choices") or []
    choice = choices[0] if choices and isinstance(choices[0], Mapping) else {}
    message = choice.get("message") or {}
    envelope = {**envelope, "model": reported_model(chat, envelope["model"])}
    base = str(envelope["id"]).removeprefix("resp_")
    output: list[dict[str, Any]] = []
    summary, blocks = message_reasoning(message)
    if summary or blocks:
        output.append(reasoning_item(item_id("rs", base, len(output)), summary, blocks))
    content = message.get("content")
    if isinstance(content, str) and content:
        output.append(text_item(item_id("msg", base, len(output)), content))
    elif isinstance(message.get("refusal"), str) and message["refusal"]:
        refusal = {"type": "refusal", "refusal": message["refusal"]}
        output.append({**text_item(item_id("msg", base, len(output)), ""), "content": [refusal]})
    for call in message.get("tool_calls") or []:
        fn = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(fn, Mapping):
            continue
        arguments = fn.get("arguments")
        index = len(output)
        output.append(
            call_item(
                item_id("fc", base, index),
                str(call.get("id") or item_id("call", base, index)),
                str(fn.get("name") or ""),
                arguments if isinstance(arguments, str) else "{}",
            )
        )
    return finished_response(
        envelope, output, choice.get("finish_reason"), usage, completed_at=completed_at
    )
