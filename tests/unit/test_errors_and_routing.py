"""The error tree, upstream status mapping, redaction, routing, admission and SSE splitting."""

from __future__ import annotations

import anyio
import pytest

from otari_gateway.config import ConfigError, ProviderConfig
from otari_gateway.control.keys import hash_key
from otari_gateway.errors import ALL_ERRORS, ANTHROPIC_TYPE_BY_STATUS, GatewayError
from otari_gateway.pipeline.admission import MISSING_CREDENTIAL, Authenticator, presented_token
from otari_gateway.pipeline.cache import TTLCache
from otari_gateway.pipeline.envelopes import anthropic_error_body, openai_error_body
from otari_gateway.pipeline.routing import Router
from otari_gateway.pipeline.translated import stream_failure
from otari_gateway.providers.http import map_status, redact
from otari_gateway.providers.openai_compat import OpenAICompatProvider
from otari_gateway.providers.sse import SSESplitter
from otari_gateway.translate.errors import UpstreamStreamError


@pytest.mark.parametrize("kind", ALL_ERRORS, ids=lambda k: k.__name__)
def test_every_error_declares_status_types_and_envelopes(kind: type[GatewayError]) -> None:
    error = kind("what happened", param="p", code="c")
    assert 400 <= error.status < 600
    expected = "api_error" if error.status >= 500 else ANTHROPIC_TYPE_BY_STATUS[error.status]
    assert error.anthropic_type == expected
    assert openai_error_body(error) == {
        "error": {"message": "what happened", "type": error.openai_type, "param": "p", "code": "c"}
    }
    assert anthropic_error_body(error)["error"] == {"type": expected, "message": "what happened"}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, 400),
        (422, 400),
        (401, 502),
        (403, 502),
        (404, 404),
        (413, 413),
        (429, 429),
        (408, 504),
        (504, 504),
        (500, 502),
        (503, 502),
        (529, 502),
    ],
)
def test_upstream_status_mapping(status: int, expected: int) -> None:
    error = map_status(status, "msg", None, None, retry_after="7", instance="openai")
    assert error.status == expected
    if status == 429:
        assert error.headers == {"Retry-After": "7"}
    if status in (401, 403):
        assert "rejected the gateway's credentials" in error.message


def test_redaction_removes_configured_and_key_shaped_secrets() -> None:
    text = "bad key sk-abcdefgh12345678 and mysecret and Bearer abcdefghijkl"
    cleaned = redact(text, ("mysecret",))
    assert "sk-abcdefgh12345678" not in cleaned
    assert "mysecret" not in cleaned
    assert "abcdefghijkl" not in cleaned


def test_a_short_key_is_redacted_where_it_stands_alone_only() -> None:
    assert redact("wreq::Error { kind: Request }", ("k",)) == "wreq::Error { kind: Request }"
    assert redact("invalid key abc123.", ("abc123",)) == "invalid key [redacted]."


def _router(aliases: dict[str, str] | None = None) -> Router:
    config = ProviderConfig(api_base="http://127.0.0.1:1/v1")
    providers = {
        "openai": OpenAICompatProvider("openai", config, "k"),
        "ollama": OpenAICompatProvider("ollama", config, None),
    }
    return Router(providers, aliases or {})


@pytest.mark.parametrize(
    ("selector", "instance", "model"),
    [
        ("openai:gpt-4o", "openai", "gpt-4o"),
        ("openai/gpt-4o", "openai", "gpt-4o"),
        ("ollama:llama3:8b", "ollama", "llama3:8b"),
        ("ollama/org/model", "ollama", "org/model"),
        ("fast", "openai", "gpt-4o-mini"),
    ],
)
def test_router_resolves_selectors(selector: str, instance: str, model: str) -> None:
    target = _router({"fast": "openai:gpt-4o-mini"}).resolve(selector)
    assert (target.instance, target.model) == (instance, model)


@pytest.mark.parametrize("selector", ["gpt-4o", "nope:gpt-4o", "openai:", "openai"])
def test_router_refuses_unknown(selector: str) -> None:
    with pytest.raises(GatewayError) as caught:
        _router().resolve(selector)
    assert caught.value.status == 400
    assert caught.value.param == "model"


def test_alias_to_unknown_instance_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"aliases\.bad"):
        _router({"bad": "nowhere:model"})


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ({"otari-key": "abc"}, "abc"),
        ({"otari-key": "Bearer abc"}, "abc"),
        ({"authorization": "Bearer abc"}, "abc"),
        ({"authorization": "bearer abc"}, "abc"),
        ({"x-api-key": "abc"}, "abc"),
        ({"otari-key": "first", "authorization": "Bearer second"}, "first"),
        ({"authorization": "Basic abc"}, None),
        ({}, None),
    ],
)
def test_presented_token_order(headers: dict[str, str], token: str | None) -> None:
    assert presented_token(headers) == token


async def test_authenticator_without_a_key_store() -> None:
    auth = Authenticator(None)
    auth.use_master_digest(hash_key("master"))
    assert (await auth.authenticate({"x-api-key": "master"})).is_master
    with pytest.raises(GatewayError, match="Invalid API key"):
        await auth.authenticate({"x-api-key": "other"})
    with pytest.raises(GatewayError) as caught:
        await auth.authenticate({})
    assert caught.value.message == MISSING_CREDENTIAL


def test_sse_splitter_handles_split_chunks_crlf_and_comments() -> None:
    splitter = SSESplitter()
    events = splitter.feed(b': keep-alive\n\nevent: a\r\ndata: {"x"')
    assert events == []
    events = splitter.feed(b": 1}\r\n\r\ndata: [DONE]\n\n")
    assert [(e.event, e.data) for e in events] == [("a", b'{"x": 1}'), ("", b"[DONE]")]
    assert events[0].raw == b'event: a\ndata: {"x": 1}\n\n'
    assert splitter.feed(b"data: tail") == []
    assert [e.data for e in splitter.flush()] == [b"tail"]


async def test_ttl_cache_single_flight_and_clear_during_load() -> None:
    now = [0.0]
    cache: TTLCache[str] = TTLCache(1.0, clock=lambda: now[0])
    loads = 0
    gate = anyio.Event()

    async def load(key: str) -> str:
        nonlocal loads
        loads += 1
        await gate.wait()
        return f"v{loads}"

    results: list[str | None] = []

    async def reader() -> None:
        results.append(await cache.get("k", load))

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(reader)
        await anyio.sleep(0.01)
        gate.set()
    assert loads == 1 and results == ["v1"] * 20
    now[0] = 2.0  # expired
    assert await cache.get("k", load) == "v2"
    cache.clear()
    assert await cache.get("k", load) == "v3"


def test_an_upstream_error_mid_stream_reaches_the_client_scrubbed() -> None:
    failure = stream_failure(
        UpstreamStreamError("invalid x-api-key sk-ant-api03-abcdefghijklmnop " + "x" * 2000)
    )
    assert "sk-ant" not in failure.message
    assert "[redacted]" in failure.message
    assert len(failure.message) < 1100
