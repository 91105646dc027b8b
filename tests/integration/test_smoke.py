"""A first end-to-end pass through every surface."""

from __future__ import annotations

import time
import urllib.request
from decimal import Decimal

import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import MASTER_KEY, Stack


def test_chat_passthrough(stack: Stack) -> None:
    with stack.openai_client() as client:
        reply = client.chat.completions.create(
            model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}]
        )
    assert reply.choices[0].message.content == "echo: hello there"
    sent = stack.openai_fake.last_request
    assert sent.json is not None and sent.json["model"] == "gpt-4o-mini"
    assert sent.headers["authorization"] == f"Bearer {stack.openai_fake.api_key}"


def test_chat_stream_passthrough_hides_usage_chunk(stack: Stack) -> None:
    with stack.openai_client() as client:
        chunks = list(
            client.chat.completions.create(
                model="openai:gpt-4o-mini",
                messages=[{"role": "user", "content": "one two three"}],
                stream=True,
            )
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    assert all(c.usage is None for c in chunks)
    sent = stack.openai_fake.last_request.json
    assert sent is not None and sent["stream_options"] == {"include_usage": True}


def test_openai_client_on_anthropic_upstream(stack: Stack) -> None:
    with stack.openai_client() as client:
        reply = client.chat.completions.create(
            model="anthropic:claude-sonnet-4-5",
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        )
        chunks = list(
            client.chat.completions.create(
                model="claude",
                messages=[{"role": "user", "content": "hi again"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert reply.choices[0].message.content == "echo: hi"
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hi again"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0


def test_anthropic_client_on_openai_upstream(stack: Stack) -> None:
    with stack.anthropic_client() as client:
        message = client.messages.create(
            model="openai:gpt-4o", max_tokens=100, messages=[{"role": "user", "content": "yo"}]
        )
        with client.messages.stream(
            model="openai:gpt-4o", max_tokens=100, messages=[{"role": "user", "content": "yo yo"}]
        ) as stream:
            final = stream.get_final_message()
    assert message.content[0].type == "text" and message.content[0].text == "echo: yo"
    assert final.content[0].type == "text" and final.content[0].text == "echo: yo yo"
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0


def test_messages_passthrough_and_responses(stack: Stack) -> None:
    with (
        stack.anthropic_client() as client,
        client.messages.stream(
            model="anthropic:claude-sonnet-4-5",
            max_tokens=50,
            messages=[{"role": "user", "content": "a b"}],
        ) as stream,
    ):
        final = stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "echo: a b"
    with stack.openai_client() as oclient:
        response = oclient.responses.create(model="openai:gpt-4o", input="ping")
        events = [
            e.type
            for e in oclient.responses.create(model="openai:gpt-4o", input="ping", stream=True)
        ]
    assert response.output_text == "echo: ping"
    assert events[0] == "response.created" and events[-1] == "response.completed"


def _get(stack: Stack, path: str) -> object:
    request = urllib.request.Request(
        stack.base_url + path, headers={"Authorization": f"Bearer {MASTER_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return orjson.loads(response.read())


def test_usage_row_and_spend_follow_a_request(stack: Stack) -> None:
    with stack.openai_client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="openai:gpt-4o", messages=[{"role": "user", "content": "count me"}]
        )
    request_id = raw.headers["x-otari-request-id"]
    deadline = time.monotonic() + 1.0
    rows: list[dict[str, object]] = []
    while time.monotonic() < deadline and not rows:
        found = _get(stack, "/v1/usage?user_id=tester&limit=1000")
        assert isinstance(found, list)
        rows = [row for row in found if row["id"] == request_id]
        time.sleep(0.05)
    assert rows, "usage row not readable within 1 s"
    row = rows[0]
    assert row["model"] == "gpt-4o" and row["provider"] == "openai"
    assert row["prompt_tokens"] == 2 and row["status"] == "success"
    assert Decimal(str(row["cost"])) > 0
    all_rows = _get(stack, "/v1/usage?user_id=tester&limit=1000")
    user = _get(stack, "/v1/users/tester")
    assert isinstance(all_rows, list) and isinstance(user, dict)
    total = sum(Decimal(str(r["cost"])) for r in all_rows)
    assert Decimal(str(user["spend"])) == total
    assert Decimal(str(user["reserved"])) == 0


def test_metrics_count_requests_tokens_and_cost(stack: Stack) -> None:
    with stack.openai_client() as client:
        client.chat.completions.create(
            model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "metered call"}]
        )
    with urllib.request.urlopen(stack.base_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    requests = [
        sample
        for sample in families["otari_requests"].samples
        if sample.labels.get("surface") == "chat" and sample.labels.get("status") == "200"
    ]
    assert sum(sample.value for sample in requests) >= 1
    assert "otari_request_duration_seconds" in families
    assert any(s.value > 0 for s in families["otari_tokens"].samples)
    assert any(s.value > 0 for s in families["otari_cost_usd"].samples)
    assert "otari_usage_writer_queue_depth" in families
