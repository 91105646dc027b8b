"""Admission through the real server with two workers: who may call, which models, at what
price — and that revoking a key reaches every worker within the cache lifetime (1 s)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.gateway_process import GatewayProcess

MASTER = "sk-admission-master"
HI = [{"role": "user", "content": "hi"}]
CACHE_SECONDS = 1.0


@dataclass
class Gateway:
    process: GatewayProcess
    fake: FakeOpenAI

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.process.call(method, path, body)

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(api_key=key, base_url=self.process.base_url + "/v1", max_retries=0)

    def key(self, **fields: Any) -> str:
        return str(self.call("POST", "/v1/keys", fields)["key"])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with FakeOpenAI() as fake:
        config = {
            "master_key": MASTER,
            "providers": {
                "openai": {"api_key": fake.api_key, "api_base": fake.base_url + "/v1"},
                "free": {
                    "provider_type": "openai",
                    "api_key": fake.api_key,
                    "api_base": fake.base_url + "/v1",
                },
            },
            "pricing": {
                "free:gpt-4o-mini": {"input_price_per_million": 0, "output_price_per_million": 0}
            },
        }
        process = GatewayProcess(config, tmp_path_factory.mktemp("admission"), workers=2)
        process.start()
        try:
            yield Gateway(process, fake)
        finally:
            process.stop()


def _ok(client: openai.OpenAI, model: str = "openai:gpt-4o-mini", **extra: Any) -> None:
    reply = client.chat.completions.create(model=model, messages=HI, **extra)
    assert reply.choices[0].message.content == "echo: hi"


def test_unpriced_model_is_402_naming_the_fix(gateway: Gateway) -> None:
    with gateway.client(gateway.key()) as client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="openai:made-up-model", messages=HI)
    assert caught.value.status_code == 402
    assert "pricing" in caught.value.message
    assert gateway.fake.requests == [] or all(
        r.json_object().get("model") != "made-up-model" for r in gateway.fake.requests
    )


def test_master_key_must_name_the_user(gateway: Gateway) -> None:
    with gateway.client(MASTER) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="openai:gpt-4o-mini", messages=HI)
        assert "user" in caught.value.message
        _ok(client, user="named-by-master")
    assert gateway.call("GET", "/v1/users/named-by-master")["user_id"] == "named-by-master"
    with (
        anthropic.Anthropic(
            api_key=MASTER, base_url=gateway.process.base_url, max_retries=0
        ) as client,
        pytest.raises(anthropic.BadRequestError) as refused,
    ):
        client.messages.create(model="openai:gpt-4o-mini", max_tokens=8, messages=HI)
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


@pytest.mark.parametrize("user", ["nul\x00byte", "u" * 256, "team/alice"])
def test_a_named_user_no_user_id_can_be_is_a_400(gateway: Gateway, user: str) -> None:
    # Such a user could never be stored on PostgreSQL (a 500 whose row failed the batch of
    # every other user's rows) or addressed under /v1/users/.
    with gateway.client(MASTER) as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="openai:gpt-4o-mini", messages=HI, user=user)
    assert caught.value.body["param"] == "user"  # type: ignore[index]


def test_key_user_mismatch_is_403(gateway: Gateway) -> None:
    with gateway.client(gateway.key(user_id="alice")) as client:
        _ok(client, user="alice")
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="openai:gpt-4o-mini", messages=HI, user="bob")


def test_anthropic_end_user_id_is_not_the_keys_user(gateway: Gateway) -> None:
    # Anthropic clients fill metadata.user_id with their own opaque end-user id.
    key = gateway.key(user_id="dora")
    with anthropic.Anthropic(
        api_key=key, base_url=gateway.process.base_url, max_retries=0
    ) as client:
        reply = client.messages.create(
            model="openai:gpt-4o-mini",
            max_tokens=8,
            messages=HI,
            metadata={"user_id": "user_0f3a9c-session-7"},
        )
    assert reply.content
    deadline = time.monotonic() + 2
    while gateway.call("GET", "/v1/users/dora")["spend"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gateway.call("GET", "/v1/users/dora")["spend"] > 0


def test_allowed_models_and_blocked_users(gateway: Gateway) -> None:
    key = gateway.key(user_id="carol", allowed_models=["openai:gpt-4o*"])
    with gateway.client(key) as client:
        _ok(client)
        with pytest.raises(openai.PermissionDeniedError) as caught:
            client.chat.completions.create(model="free:gpt-4o-mini", messages=HI)
        assert "free:gpt-4o-mini" in caught.value.message
        gateway.call("PATCH", "/v1/users/carol", {"blocked": True})
        time.sleep(CACHE_SECONDS + 0.2)
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="openai:gpt-4o-mini", messages=HI)


def test_free_model_is_never_blocked_by_an_exhausted_budget(gateway: Gateway) -> None:
    budget = gateway.call("POST", "/v1/budgets", {"max_budget": 0})
    gateway.call("POST", "/v1/users", {"user_id": "broke", "budget_id": budget["budget_id"]})
    with gateway.client(gateway.key(user_id="broke")) as client:
        with pytest.raises(openai.PermissionDeniedError) as caught:
            client.chat.completions.create(model="openai:gpt-4o-mini", messages=HI)
        assert "User 'broke' has exceeded budget limit" in caught.value.message
        _ok(client, model="free:gpt-4o-mini")
    time.sleep(1.0)
    rows = gateway.call("GET", "/v1/usage?user_id=broke")
    assert sorted((row["status"], row["status_code"], row["cost"]) for row in rows) == [
        ("error", 403, 0),
        ("success", 200, 0),
    ]


def _statuses(gateway: Gateway, key: str, count: int = 12) -> set[int]:
    statuses: set[int] = set()
    for _ in range(count):
        # A fresh connection each time, so both workers' caches are exercised.
        request = urllib.request.Request(
            gateway.process.base_url + "/v1/models", headers={"Authorization": f"Bearer {key}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                statuses.add(response.status)
        except urllib.error.HTTPError as error:
            statuses.add(error.code)
            error.close()
    return statuses


@pytest.mark.parametrize("action", ["deactivate", "rotate", "delete", "expire"])
def test_revocation_reaches_every_worker_within_a_second(gateway: Gateway, action: str) -> None:
    created = gateway.call("POST", "/v1/keys", {"user_id": "revoked"})
    key, key_id = created["key"], created["id"]
    assert _statuses(gateway, key) == {200}
    if action == "deactivate":
        gateway.call("PATCH", f"/v1/keys/{key_id}", {"is_active": False})
    elif action == "rotate":
        rotated = gateway.call("POST", f"/v1/keys/{key_id}/rotate")
        assert _statuses(gateway, rotated["key"]) == {200}
    elif action == "delete":
        gateway.call("DELETE", f"/v1/keys/{key_id}")
    else:
        soon = time.time() + 2
        expires = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(soon)) + "Z"
        gateway.call("PATCH", f"/v1/keys/{key_id}", {"expires_at": expires})
        time.sleep(2.1)
    time.sleep(CACHE_SECONDS + 0.1)
    assert _statuses(gateway, key) == {401}


def test_usage_rows_carry_user_key_and_request_id(gateway: Gateway, tmp_path: Path) -> None:
    created = gateway.call("POST", "/v1/keys", {"user_id": "dave"})
    with gateway.client(created["key"]) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="openai:gpt-4o-mini", messages=HI
        )
    request_id = raw.headers["x-otari-request-id"]
    time.sleep(1.0)
    rows = gateway.call("GET", f"/v1/usage?api_key_id={created['id']}")
    assert [row["id"] for row in rows] == [request_id]
    assert rows[0]["user_id"] == "dave" and rows[0]["endpoint"] == "chat"
