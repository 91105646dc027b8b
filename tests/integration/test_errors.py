"""API.md's enforcement table, row by row, through the real gateway.

Each failure is checked for its status code, for the exact error envelope of its surface
(OpenAI's on OpenAI routes, Anthropic's on ``/v1/messages``), for the exception class the
official SDK raises, and for what must never leak: stack traces and credentials. Malformed
requests are sent as raw HTTP, since the SDKs refuse to build them.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import orjson
import pytest

from tests.integration.conftest import BODY_LIMIT, MASTER_KEY, Stack

MISSING_CREDENTIAL = "Missing Otari-Key, Authorization, or x-api-key header"
BAD_UPSTREAM_KEY = "sk-wrong-key-0123456789"
FAKE_KEYS = ("sk-fake-openai", "sk-fake-local", "sk-ant-fake", BAD_UPSTREAM_KEY, "sk-dead")
CLIENT_TIMEOUT = 20.0

ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
USER_HI: Any = [{"role": "user", "content": "hi"}]
# Requests made with the master key name the user they bill (API.md).
CHAT_BODY: Any = {"model": "openai:gpt-4o-mini", "messages": USER_HI, "user": "tester"}
MESSAGES_BODY: Any = {
    "model": "anthropic:claude-sonnet-4-5",
    "max_tokens": 16,
    "messages": USER_HI,
    "metadata": {"user_id": "tester"},
}
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


@dataclass(frozen=True)
class Raw:
    status: int
    headers: Mapping[str, str]  # lowercase names
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def send(
    stack: Stack,
    method: str,
    path: str,
    body: bytes | Iterator[bytes] | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    chunked: bool = False,
) -> Raw:
    """One raw HTTP/1.1 request to the gateway, on its own connection."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.gateway.port, timeout=CLIENT_TIMEOUT)
    try:
        all_headers = dict(headers or {})
        if body is not None:
            all_headers.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=all_headers, encode_chunked=chunked)
        response = conn.getresponse()
        data = response.read()
        return Raw(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def post_json(
    stack: Stack, path: str, payload: Any, headers: Mapping[str, str] | None = None
) -> Raw:
    return send(
        stack,
        "POST",
        path,
        orjson.dumps(billed(path, payload)),
        AUTH if headers is None else headers,
    )


def billed(path: str, payload: Any) -> Any:
    """The payload naming the billed user, as master-key requests must (unless it already
    does, or is not an object — those cases are what some tests are about)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
        return payload
    if path.startswith("/v1/messages"):
        metadata = payload.get("metadata")
        if metadata is None:
            return {**payload, "metadata": {"user_id": "tester"}}
        return payload
    return payload if "user" in payload else {**payload, "user": "tester"}


def assert_clean(data: bytes | str) -> None:
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    assert "Traceback" not in text
    assert 'File "' not in text
    for key in (*FAKE_KEYS, MASTER_KEY):
        assert key not in text, f"credential {key!r} leaked in {text!r}"


def openai_error(raw: Raw, status: int) -> dict[str, Any]:
    """Assert an OpenAI error envelope with ``status``; return its ``error`` object."""
    assert raw.status == status, raw.body
    assert raw.headers.get("content-type", "").startswith("application/json")
    assert_clean(raw.body)
    body = raw.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert error["param"] is None or isinstance(error["param"], str)
    assert error["code"] is None or isinstance(error["code"], str)
    return error


def anthropic_type(status: int) -> str:
    return "api_error" if status >= 500 else ANTHROPIC_TYPES[status]


def anthropic_error(raw: Raw, status: int, error_type: str | None = None) -> dict[str, Any]:
    """Assert an Anthropic error envelope with ``status``; return its ``error`` object."""
    assert raw.status == status, raw.body
    assert raw.headers.get("content-type", "").startswith("application/json")
    assert_clean(raw.body)
    body = raw.json()
    assert isinstance(body, dict) and body.get("type") == "error", body
    assert set(body) <= {"type", "error", "request_id"}
    error = body["error"]
    assert set(error) == {"type", "message"}, error
    assert error["type"] == (error_type or anthropic_type(status))
    assert isinstance(error["message"], str) and error["message"]
    return error


def no_upstream_calls(stack: Stack) -> None:
    assert stack.openai_fake.requests == []
    assert stack.local_fake.requests == []
    assert stack.anthropic_fake.requests == []


def sdk_body(exc: openai.APIStatusError | anthropic.APIStatusError) -> bytes:
    content = exc.response.content
    assert_clean(content)
    return content


# --------------------------------------------------------------------------- authentication

ROUTES_OPENAI = [
    ("POST", CHAT, CHAT_BODY),
    ("POST", "/v1/responses", {"model": "openai:gpt-4o", "input": "hi"}),
    ("POST", "/v1/embeddings", {"model": "openai:text-embedding-3-small", "input": "hi"}),
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/openai:gpt-4o", None),
]
ROUTES_ANTHROPIC = [
    ("POST", MESSAGES, MESSAGES_BODY),
    (
        "POST",
        "/v1/messages/count_tokens",
        {"model": "anthropic:claude-sonnet-4-5", "messages": USER_HI},
    ),
]


def _request(stack: Stack, method: str, path: str, payload: Any, headers: Mapping[str, str]) -> Raw:
    body = orjson.dumps(payload) if payload is not None else None
    return send(stack, method, path, body, headers)


@pytest.mark.parametrize(("method", "path", "payload"), ROUTES_OPENAI)
def test_no_credential_openai_routes(stack: Stack, method: str, path: str, payload: Any) -> None:
    error = openai_error(_request(stack, method, path, payload, {}), 401)
    assert error["message"] == MISSING_CREDENTIAL
    no_upstream_calls(stack)


@pytest.mark.parametrize(("method", "path", "payload"), ROUTES_ANTHROPIC)
def test_no_credential_anthropic_routes(stack: Stack, method: str, path: str, payload: Any) -> None:
    error = anthropic_error(_request(stack, method, path, payload, {}), 401)
    assert error["message"] == MISSING_CREDENTIAL
    no_upstream_calls(stack)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Otari-Key": ""},
        {"x-api-key": "  "},
    ],
    ids=["empty-bearer", "basic-scheme", "empty-otari-key", "blank-x-api-key"],
)
def test_unusable_credential_counts_as_missing(stack: Stack, headers: dict[str, str]) -> None:
    error = openai_error(post_json(stack, CHAT, CHAT_BODY, headers), 401)
    assert error["message"] == MISSING_CREDENTIAL
    no_upstream_calls(stack)


@pytest.mark.parametrize(("method", "path", "payload"), ROUTES_OPENAI)
def test_wrong_key_openai_routes(stack: Stack, method: str, path: str, payload: Any) -> None:
    raw = _request(stack, method, path, payload, {"Authorization": "Bearer sk-otari-wrong"})
    assert openai_error(raw, 401)["message"] == "Invalid API key"
    no_upstream_calls(stack)


@pytest.mark.parametrize(("method", "path", "payload"), ROUTES_ANTHROPIC)
def test_wrong_key_anthropic_routes(stack: Stack, method: str, path: str, payload: Any) -> None:
    raw = _request(stack, method, path, payload, {"x-api-key": "sk-otari-wrong"})
    assert anthropic_error(raw, 401)["message"] == "Invalid API key"
    no_upstream_calls(stack)


def test_wrong_key_sdk_exceptions(stack: Stack) -> None:
    with (
        stack.openai_client(api_key="sk-otari-wrong") as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.chat.completions.create(model="openai:gpt-4o-mini", messages=USER_HI)
    assert caught.value.status_code == 401
    assert orjson.loads(sdk_body(caught.value))["error"]["message"] == "Invalid API key"
    with (
        stack.anthropic_client(api_key="sk-otari-wrong") as aclient,
        pytest.raises(anthropic.AuthenticationError) as acaught,
    ):
        aclient.messages.create(
            model="anthropic:claude-sonnet-4-5", max_tokens=16, messages=USER_HI
        )
    body = orjson.loads(sdk_body(acaught.value))
    assert body["error"] == {"type": "authentication_error", "message": "Invalid API key"}
    no_upstream_calls(stack)


@pytest.mark.parametrize(
    "headers",
    [
        {"Otari-Key": MASTER_KEY},
        {"Otari-Key": f"Bearer {MASTER_KEY}"},
        {"Authorization": f"Bearer {MASTER_KEY}"},
        {"Authorization": f"bearer {MASTER_KEY}"},
        {"x-api-key": MASTER_KEY},
    ],
    ids=["otari-key", "otari-key-bearer", "authorization", "authorization-lowercase", "x-api-key"],
)
def test_accepted_credentials(stack: Stack, headers: dict[str, str]) -> None:
    chat = post_json(stack, CHAT, CHAT_BODY, headers)
    assert chat.status == 200, chat.body
    assert chat.json()["choices"][0]["message"]["content"] == "echo: hi"
    messages = post_json(stack, MESSAGES, MESSAGES_BODY, headers)
    assert messages.status == 200, messages.body
    assert messages.json()["content"][0]["text"] == "echo: hi"
    models = send(stack, "GET", "/v1/models", None, headers)
    assert models.status == 200, models.body


# --------------------------------------------------------------------------- request bodies


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"model": "openai:gpt-4o-mini", "messages": [', b"", b"\xff\xfe"],
    ids=["garbage", "truncated", "empty", "not-utf8"],
)
def test_malformed_json_chat(stack: Stack, body: bytes) -> None:
    openai_error(send(stack, "POST", CHAT, body, AUTH), 400)
    no_upstream_calls(stack)


@pytest.mark.parametrize("body", [b"{not json", b""], ids=["garbage", "empty"])
def test_malformed_json_messages(stack: Stack, body: bytes) -> None:
    anthropic_error(send(stack, "POST", MESSAGES, body, AUTH), 400)
    no_upstream_calls(stack)


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        (CHAT, [CHAT_BODY]),
        (CHAT, "just a string"),
        (CHAT, 42),
        (CHAT, None),
        ("/v1/embeddings", ["hi"]),
        ("/v1/responses", [{"model": "openai:gpt-4o"}]),
    ],
)
def test_body_not_an_object_openai_routes(stack: Stack, path: str, payload: Any) -> None:
    openai_error(post_json(stack, path, payload), 400)
    no_upstream_calls(stack)


def test_body_not_an_object_messages(stack: Stack) -> None:
    anthropic_error(post_json(stack, MESSAGES, [MESSAGES_BODY]), 400)
    no_upstream_calls(stack)


CHAT_INVALID = [
    ({"messages": USER_HI}, "model"),
    ({"model": None, "messages": USER_HI}, "model"),
    ({"model": 123, "messages": USER_HI}, "model"),
    ({"model": ["openai:gpt-4o"], "messages": USER_HI}, "model"),
    ({"model": "", "messages": USER_HI}, "model"),
    ({"model": "openai:gpt-4o"}, "messages"),
    ({"model": "openai:gpt-4o", "messages": []}, "messages"),
    ({"model": "openai:gpt-4o", "messages": "hi"}, "messages"),
    ({"model": "openai:gpt-4o", "messages": {"role": "user"}}, "messages"),
    ({"model": "openai:gpt-4o", "messages": ["hi"]}, "messages[0]"),
    ({"model": "openai:gpt-4o", "messages": [*USER_HI, None]}, "messages[1]"),
    ({"model": "openai:gpt-4o", "messages": [{"content": "hi"}]}, "role"),
    ({"model": "openai:gpt-4o", "messages": [{"role": 1, "content": "hi"}]}, "role"),
    ({"model": "openai:gpt-4o", "messages": [{"role": None, "content": "hi"}]}, "role"),
    ({"model": "openai:gpt-4o", "messages": USER_HI, "stream": "yes"}, "stream"),
    ({"model": "openai:gpt-4o", "messages": USER_HI, "stream": 1}, "stream"),
    ({"model": "openai:gpt-4o", "messages": USER_HI, "stream": "false"}, "stream"),
]


@pytest.mark.parametrize(("payload", "field"), CHAT_INVALID)
def test_chat_field_validation(stack: Stack, payload: Any, field: str) -> None:
    error = openai_error(post_json(stack, CHAT, payload), 400)
    assert field in error["message"] or field == error["param"], error
    assert error["type"] == "invalid_request_error"
    no_upstream_calls(stack)


def test_chat_validation_sdk_exception(stack: Stack) -> None:
    with stack.openai_client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="openai:gpt-4o-mini", messages=[])
    assert "messages" in orjson.loads(sdk_body(caught.value))["error"]["message"]
    no_upstream_calls(stack)


MESSAGES_INVALID = [
    ({"model": "anthropic:claude-sonnet-4-5", "messages": USER_HI}, "max_tokens"),
    ({**MESSAGES_BODY, "max_tokens": "16"}, "max_tokens"),
    ({**MESSAGES_BODY, "max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 16, "messages": USER_HI}, "model"),
    ({**MESSAGES_BODY, "messages": []}, "messages"),
    ({**MESSAGES_BODY, "messages": [{"content": "hi"}]}, "role"),
    ({**MESSAGES_BODY, "stream": "yes"}, "stream"),
]


@pytest.mark.parametrize(("payload", "field"), MESSAGES_INVALID)
def test_messages_field_validation(stack: Stack, payload: Any, field: str) -> None:
    error = anthropic_error(post_json(stack, MESSAGES, payload), 400)
    assert field in error["message"], error
    no_upstream_calls(stack)


def test_messages_without_max_tokens_on_translated_route(stack: Stack) -> None:
    payload = {"model": "openai:gpt-4o", "messages": USER_HI}
    error = anthropic_error(post_json(stack, MESSAGES, payload), 400)
    assert "max_tokens" in error["message"]
    no_upstream_calls(stack)


@pytest.mark.parametrize(
    "model", ["nope:gpt-4o", "gpt-4o", "nope/gpt-4o", "openai:", ":gpt-4o", "unknown-alias"]
)
def test_unknown_provider_instance_chat(stack: Stack, model: str) -> None:
    with stack.openai_client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model, messages=USER_HI)
    assert caught.value.status_code == 400
    error = orjson.loads(sdk_body(caught.value))["error"]
    assert set(error) == {"message", "type", "param", "code"}
    no_upstream_calls(stack)


def test_unknown_provider_instance_messages(stack: Stack) -> None:
    with stack.anthropic_client() as client, pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="nope:claude", max_tokens=16, messages=USER_HI)
    body = orjson.loads(sdk_body(caught.value))
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    no_upstream_calls(stack)


def test_unknown_provider_instance_other_surfaces(stack: Stack) -> None:
    openai_error(post_json(stack, "/v1/embeddings", {"model": "nope:x", "input": "hi"}), 400)
    openai_error(post_json(stack, "/v1/responses", {"model": "nope:x", "input": "hi"}), 400)
    payload = {"model": "nope:x", "messages": USER_HI}
    anthropic_error(post_json(stack, "/v1/messages/count_tokens", payload), 400)
    no_upstream_calls(stack)


# --------------------------------------------------------------------------- body size


def _big_body(size: int, *, messages_route: bool = False) -> bytes:
    base: dict[str, Any] = dict(MESSAGES_BODY if messages_route else CHAT_BODY)
    skeleton = orjson.dumps({**base, "messages": [{"role": "user", "content": ""}]})
    filler = "a " * ((size - len(skeleton)) // 2 + 1)
    body = orjson.dumps({**base, "messages": [{"role": "user", "content": filler}]})
    assert len(body) >= size
    return body


def _chunks(data: bytes, size: int = 16 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_body_over_limit_with_content_length(stack: Stack) -> None:
    body = _big_body(BODY_LIMIT + 1)
    openai_error(send(stack, "POST", CHAT, body, AUTH), 413)
    no_upstream_calls(stack)


def test_body_over_limit_chunked(stack: Stack) -> None:
    body = _big_body(BODY_LIMIT + 64 * 1024)
    raw = send(stack, "POST", CHAT, _chunks(body), AUTH, chunked=True)
    openai_error(raw, 413)
    no_upstream_calls(stack)


def test_body_over_limit_messages(stack: Stack) -> None:
    body = _big_body(BODY_LIMIT + 1, messages_route=True)
    anthropic_error(send(stack, "POST", MESSAGES, body, AUTH), 413, "request_too_large")
    raw = send(stack, "POST", MESSAGES, _chunks(body), AUTH, chunked=True)
    anthropic_error(raw, 413, "request_too_large")
    no_upstream_calls(stack)


def test_body_over_limit_sdk(stack: Stack) -> None:
    filler = "a " * (BODY_LIMIT // 2 + 10)
    with stack.openai_client() as client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="openai:gpt-4o-mini", messages=[{"role": "user", "content": filler}]
        )
    assert caught.value.status_code == 413
    no_upstream_calls(stack)


def test_body_just_under_limit_is_accepted(stack: Stack) -> None:
    body = _big_body(BODY_LIMIT - 4096)
    assert len(body) <= BODY_LIMIT
    raw = send(stack, "POST", CHAT, body, AUTH)
    assert raw.status == 200, raw.body[:500]
    raw = send(stack, "POST", CHAT, _chunks(body), AUTH, chunked=True)
    assert raw.status == 200, raw.body[:500]


# --------------------------------------------------------------------------- upstream failures


def test_upstream_500_is_502(stack: Stack) -> None:
    stack.openai_fake.fail_next(500)
    with stack.openai_client() as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="openai:gpt-4o-mini", messages=USER_HI)
    assert caught.value.status_code == 502
    stack.openai_fake.fail_next(503)
    openai_error(post_json(stack, CHAT, CHAT_BODY), 502)


def test_upstream_500_is_502_on_stream(stack: Stack) -> None:
    stack.openai_fake.fail_next(500)
    with stack.openai_client() as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="openai:gpt-4o-mini", messages=USER_HI, stream=True
        ).close()
    assert caught.value.status_code == 502


def test_upstream_500_is_502_on_messages(stack: Stack) -> None:
    stack.anthropic_fake.fail_next(500)
    anthropic_error(post_json(stack, MESSAGES, MESSAGES_BODY), 502)
    stack.anthropic_fake.fail_next(529)
    with stack.anthropic_client() as client, pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.create(model="anthropic:claude-sonnet-4-5", max_tokens=16, messages=USER_HI)
    assert caught.value.status_code == 502


def test_upstream_500_translated(stack: Stack) -> None:
    stack.anthropic_fake.fail_next(500)
    payload = {"model": "anthropic:claude-sonnet-4-5", "messages": USER_HI}
    openai_error(post_json(stack, CHAT, payload), 502)
    stack.openai_fake.fail_next(500)
    anthropic_error(post_json(stack, MESSAGES, {**MESSAGES_BODY, "model": "openai:gpt-4o"}), 502)


@pytest.mark.parametrize("status", [402, 409, 418, 500, 501, 503, 529])
def test_upstream_other_statuses_are_502(stack: Stack, status: int) -> None:
    stack.openai_fake.fail_next(status)
    openai_error(post_json(stack, CHAT, CHAT_BODY), 502)
    stack.anthropic_fake.fail_next(status)
    anthropic_error(post_json(stack, MESSAGES, MESSAGES_BODY), 502)


def test_upstream_reply_not_a_json_object_is_502(stack: Stack) -> None:
    not_an_object: Any = ["not", "a", "completion"]
    stack.openai_fake.fail_next(200, body=not_an_object)
    openai_error(post_json(stack, CHAT, CHAT_BODY), 502)
    stack.anthropic_fake.fail_next(200, body=not_an_object)
    anthropic_error(post_json(stack, MESSAGES, MESSAGES_BODY), 502)


def test_upstream_hangs_up_without_answer_is_502(stack: Stack) -> None:
    stack.openai_fake.drop_stream_next(after_events=0)
    with stack.openai_client() as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="openai:gpt-4o-mini", messages=USER_HI)
    assert caught.value.status_code == 502
    sdk_body(caught.value)


def test_upstream_429_keeps_retry_after(stack: Stack) -> None:
    stack.openai_fake.fail_next(429, headers={"Retry-After": "7"})
    with stack.openai_client() as client, pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="openai:gpt-4o-mini", messages=USER_HI)
    assert caught.value.status_code == 429
    assert caught.value.response.headers.get("retry-after") == "7"
    stack.openai_fake.fail_next(429, headers={"Retry-After": "7"})
    raw = post_json(stack, CHAT, CHAT_BODY)
    openai_error(raw, 429)
    assert raw.headers.get("retry-after") == "7"


def test_upstream_429_keeps_retry_after_on_stream(stack: Stack) -> None:
    stack.openai_fake.fail_next(429, headers={"Retry-After": "7"})
    raw = post_json(stack, CHAT, {**CHAT_BODY, "stream": True})
    openai_error(raw, 429)
    assert raw.headers.get("retry-after") == "7"


def test_upstream_429_keeps_retry_after_on_messages(stack: Stack) -> None:
    stack.anthropic_fake.fail_next(429, headers={"retry-after": "7"})
    with stack.anthropic_client() as client, pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="anthropic:claude-sonnet-4-5", max_tokens=16, messages=USER_HI)
    assert caught.value.status_code == 429
    assert caught.value.response.headers.get("retry-after") == "7"
    stack.anthropic_fake.fail_next(429, headers={"retry-after": "7"})
    raw = post_json(stack, MESSAGES, MESSAGES_BODY)
    anthropic_error(raw, 429, "rate_limit_error")
    assert raw.headers.get("retry-after") == "7"


def test_upstream_429_translated_keeps_retry_after(stack: Stack) -> None:
    stack.openai_fake.fail_next(429, headers={"Retry-After": "7"})
    raw = post_json(stack, MESSAGES, {**MESSAGES_BODY, "model": "openai:gpt-4o"})
    anthropic_error(raw, 429, "rate_limit_error")
    assert raw.headers.get("retry-after") == "7"


def test_upstream_429_chat_on_anthropic_keeps_retry_after(stack: Stack) -> None:
    stack.anthropic_fake.fail_next(429, headers={"retry-after": "7"})
    with stack.openai_client() as client, pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="anthropic:claude-sonnet-4-5", messages=USER_HI)
    assert caught.value.response.headers.get("retry-after") == "7"
    sdk_body(caught.value)


def test_upstream_401_bad_gateway_credentials(stack: Stack) -> None:
    with stack.openai_client() as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="badkey:gpt-4o-mini", messages=USER_HI)
    assert caught.value.status_code == 502
    error = orjson.loads(sdk_body(caught.value))["error"]
    assert "rejected the gateway's credentials" in error["message"]
    # The upstream's answer masks the key as sk-********6789; nothing of it may surface.
    assert "6789" not in caught.value.response.text
    assert len(stack.openai_fake.requests) == 1
    assert stack.openai_fake.last_request.headers["authorization"] == f"Bearer {BAD_UPSTREAM_KEY}"


def test_upstream_401_on_stream_and_messages(stack: Stack) -> None:
    raw = post_json(stack, CHAT, {"model": "badkey:gpt-4o", "messages": USER_HI, "stream": True})
    assert "rejected the gateway's credentials" in openai_error(raw, 502)["message"]
    raw = post_json(stack, MESSAGES, {**MESSAGES_BODY, "model": "badkey:gpt-4o"})
    assert "rejected the gateway's credentials" in anthropic_error(raw, 502)["message"]


def test_upstream_403_is_502(stack: Stack) -> None:
    stack.anthropic_fake.fail_next(403)
    raw = post_json(stack, MESSAGES, MESSAGES_BODY)
    assert "rejected the gateway's credentials" in anthropic_error(raw, 502)["message"]


def test_upstream_404_unknown_model(stack: Stack) -> None:
    with stack.openai_client() as client, pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="openai:missing-model", messages=USER_HI)
    error = orjson.loads(sdk_body(caught.value))["error"]
    assert "missing-model" in error["message"]
    sent = stack.openai_fake.last_request.json
    assert sent is not None and sent["model"] == "missing-model"


def test_upstream_404_on_messages(stack: Stack) -> None:
    with stack.anthropic_client() as client, pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="anthropic:missing-model", max_tokens=16, messages=USER_HI)
    body = orjson.loads(sdk_body(caught.value))
    assert body["error"]["type"] == "not_found_error"
    assert "missing-model" in body["error"]["message"]


def test_upstream_404_on_stream(stack: Stack) -> None:
    raw = post_json(stack, CHAT, {**CHAT_BODY, "model": "openai:missing-model", "stream": True})
    assert "missing-model" in openai_error(raw, 404)["message"]


def test_upstream_400_keeps_provider_message(stack: Stack) -> None:
    message = "Unsupported value: 'temperature' does not support 7 with this model."
    stack.openai_fake.fail_next(
        400,
        body={
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": "temperature",
                "code": "unsupported_value",
            }
        },
    )
    with stack.openai_client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="openai:gpt-4o-mini", messages=USER_HI, temperature=7)
    error = orjson.loads(sdk_body(caught.value))["error"]
    assert error["message"] == message
    assert error["type"] == "invalid_request_error"


def test_upstream_422_is_400(stack: Stack) -> None:
    stack.openai_fake.fail_next(422, body={"detail": "field required: messages.0.content"})
    error = openai_error(post_json(stack, CHAT, CHAT_BODY), 400)
    assert "field required" in error["message"]


def test_upstream_400_on_messages_keeps_provider_message(stack: Stack) -> None:
    message = "messages.0.content: text content blocks must be non-empty"
    stack.anthropic_fake.fail_next(
        400, body={"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    )
    error = anthropic_error(post_json(stack, MESSAGES, MESSAGES_BODY), 400)
    assert error["message"] == message


def test_upstream_error_message_is_redacted(stack: Stack) -> None:
    leaky = (
        f"key {stack.openai_fake.api_key} is over quota; also saw Bearer {MASTER_KEY} "
        "and sk-proj-abcdefghijklmnop"
    )
    stack.openai_fake.fail_next(400, body={"error": {"message": leaky, "type": "x"}})
    raw = post_json(stack, CHAT, CHAT_BODY)
    error = openai_error(raw, 400)
    assert "sk-proj-abcdefghijklmnop" not in error["message"]
    assert "over quota" in error["message"]
    stack.anthropic_fake.fail_next(
        400, body={"type": "error", "error": {"type": "x", "message": leaky}}
    )
    anthropic_error(post_json(stack, MESSAGES, MESSAGES_BODY), 400)


def test_upstream_timeout_is_504(stack: Stack) -> None:
    stack.openai_fake.delay_next(3)
    started = time.monotonic()
    with stack.openai_client() as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="slow:gpt-4o-mini", messages=USER_HI)
    assert caught.value.status_code == 504
    assert time.monotonic() - started < 2.9
    sdk_body(caught.value)


def test_upstream_timeout_is_504_on_stream(stack: Stack) -> None:
    stack.openai_fake.delay_next(3)
    started = time.monotonic()
    raw = post_json(stack, CHAT, {"model": "slow:gpt-4o-mini", "messages": USER_HI, "stream": True})
    openai_error(raw, 504)
    assert time.monotonic() - started < 2.9


def test_upstream_timeout_is_504_on_messages(stack: Stack) -> None:
    stack.openai_fake.delay_next(3)
    with stack.anthropic_client() as client, pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="slow:gpt-4o", max_tokens=16, messages=USER_HI)
    assert caught.value.status_code == 504
    body = orjson.loads(sdk_body(caught.value))
    assert body["error"]["type"] == "api_error"


def test_dead_upstream_is_502(stack: Stack) -> None:
    with stack.openai_client() as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="dead:gpt-4o", messages=USER_HI)
    assert caught.value.status_code == 502
    sdk_body(caught.value)
    # What kind of failure, not the HTTP client's debug dump (URLs, ports, addresses).
    assert caught.value.message.endswith(
        "provider 'dead' could not be reached: the connection was refused or failed"
    )
    raw = post_json(stack, CHAT, {"model": "dead:gpt-4o", "messages": USER_HI, "stream": True})
    openai_error(raw, 502)
    anthropic_error(post_json(stack, MESSAGES, {**MESSAGES_BODY, "model": "dead:gpt-4o"}), 502)
    raw = post_json(stack, "/v1/embeddings", {"model": "dead:text-embedding", "input": "x"})
    openai_error(raw, 502)


# --------------------------------------------------------------------------- mid-stream death


def _consume_openai_stream(stack: Stack, model: str) -> tuple[list[Any], float]:
    chunks: list[Any] = []
    started = time.monotonic()
    with (
        stack.openai_client() as client,
        pytest.raises(openai.APIError) as caught,
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "a long answer please"}],
            stream=True,
        ) as stream,
    ):
        chunks.extend(stream)
    elapsed = time.monotonic() - started
    assert not isinstance(caught.value, openai.APITimeoutError)
    assert not isinstance(caught.value, openai.APIConnectionError)
    assert isinstance(caught.value.message, str) and caught.value.message
    assert_clean(caught.value.message)
    return chunks, elapsed


def test_chat_stream_upstream_dies(stack: Stack) -> None:
    stack.openai_fake.drop_stream_next(after_events=2)
    chunks, elapsed = _consume_openai_stream(stack, "openai:gpt-4o-mini")
    assert elapsed < CLIENT_TIMEOUT / 2
    assert len(chunks) <= 2


def test_chat_stream_upstream_dies_raw_error_event(stack: Stack) -> None:
    stack.openai_fake.drop_stream_next(after_events=2)
    raw = post_json(stack, CHAT, {**CHAT_BODY, "stream": True})
    assert raw.status == 200
    assert_clean(raw.body)
    assert b"[DONE]" not in raw.body
    events = [e for e in raw.body.split(b"\n\n") if e.strip()]
    last = events[-1]
    assert last.startswith(b"data: ")
    error = orjson.loads(last[len(b"data: ") :])
    assert set(error) == {"error"}
    assert set(error["error"]) == {"message", "type", "param", "code"}


def test_chat_on_anthropic_stream_upstream_dies(stack: Stack) -> None:
    stack.anthropic_fake.drop_stream_next(after_events=2)
    _, elapsed = _consume_openai_stream(stack, "anthropic:claude-sonnet-4-5")
    assert elapsed < CLIENT_TIMEOUT / 2


def _consume_anthropic_stream(stack: Stack, model: str) -> float:
    started = time.monotonic()
    with (
        stack.anthropic_client() as client,
        pytest.raises(anthropic.APIError) as caught,
        client.messages.create(
            model=model,
            max_tokens=64,
            messages=[{"role": "user", "content": "a long answer please"}],
            stream=True,
        ) as stream,
    ):
        list(stream)
    assert not isinstance(caught.value, anthropic.APITimeoutError)
    assert not isinstance(caught.value, anthropic.APIConnectionError)
    assert_clean(str(caught.value))
    return time.monotonic() - started


def test_messages_stream_upstream_dies(stack: Stack) -> None:
    stack.anthropic_fake.drop_stream_next(after_events=2)
    assert _consume_anthropic_stream(stack, "anthropic:claude-sonnet-4-5") < CLIENT_TIMEOUT / 2


def test_messages_stream_upstream_dies_raw_error_event(stack: Stack) -> None:
    stack.anthropic_fake.drop_stream_next(after_events=2)
    raw = post_json(stack, MESSAGES, {**MESSAGES_BODY, "stream": True})
    assert raw.status == 200
    assert_clean(raw.body)
    events = [e for e in raw.body.split(b"\n\n") if e.strip()]
    assert b"message_stop" not in raw.body
    last = events[-1]
    assert last.startswith(b"event: error\n")
    data = orjson.loads(last.split(b"\ndata: ", 1)[1])
    assert data["type"] == "error"
    assert set(data["error"]) == {"type", "message"}
    assert data["error"]["type"] == "api_error"


def test_messages_on_openai_stream_upstream_dies(stack: Stack) -> None:
    stack.openai_fake.drop_stream_next(after_events=2)
    assert _consume_anthropic_stream(stack, "openai:gpt-4o") < CLIENT_TIMEOUT / 2


def test_messages_stream_helper_upstream_dies(stack: Stack) -> None:
    stack.anthropic_fake.drop_stream_next(after_events=3)
    with (
        stack.anthropic_client() as client,
        pytest.raises(anthropic.APIError),
        client.messages.stream(
            model="anthropic:claude-sonnet-4-5", max_tokens=64, messages=USER_HI
        ) as stream,
    ):
        stream.get_final_message()


def test_responses_stream_upstream_dies(stack: Stack) -> None:
    stack.openai_fake.drop_stream_next(after_events=2)
    raw = post_json(
        stack, "/v1/responses", {"model": "openai:gpt-4o", "input": "hi", "stream": True}
    )
    assert raw.status == 200
    assert_clean(raw.body)
    assert b"response.completed" not in raw.body
    assert b"event: error" in raw.body


def test_gateway_serves_after_stream_failures(stack: Stack) -> None:
    stack.openai_fake.drop_stream_next(after_events=1, times=3)
    for _ in range(3):
        raw = post_json(stack, CHAT, {**CHAT_BODY, "stream": True})
        assert raw.status == 200
    with stack.openai_client() as client:
        reply = client.chat.completions.create(model="openai:gpt-4o-mini", messages=USER_HI)
    assert reply.choices[0].message.content == "echo: hi"


# --------------------------------------------------------------------------- methods and paths


def test_get_on_post_route_openai(stack: Stack) -> None:
    for path in (CHAT, "/v1/embeddings", "/v1/responses"):
        openai_error(send(stack, "GET", path, None, AUTH), 405)


def test_get_on_post_route_messages(stack: Stack) -> None:
    raw = send(stack, "GET", MESSAGES, None, AUTH)
    assert raw.status == 405
    assert_clean(raw.body)
    body = raw.json()
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}


def test_post_on_get_route(stack: Stack) -> None:
    openai_error(send(stack, "POST", "/v1/models", b"{}", AUTH), 405)


@pytest.mark.parametrize("path", ["/v1/nope", "/nope", "/v1/chat/completions/extra", "/v2/chat"])
def test_unknown_path(stack: Stack, path: str) -> None:
    openai_error(send(stack, "GET", path, None, AUTH), 404)
    openai_error(send(stack, "POST", path, b"{}", AUTH), 404)
