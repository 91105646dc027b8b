"""Stored responses through the real gateway, with the official SDK: each response belongs
to the user who made it, on the provider instance that made it.

The owner retrieves, lists the input items of, continues (``previous_response_id``) and
deletes a response; anyone else is told it does not exist, and the upstream, which would
hand any response to any caller of the shared account, is never asked.
"""

from __future__ import annotations

import urllib.parse
import uuid

import openai
import pytest

from tests.integration.conftest import MASTER_KEY, Stack, create_key

MODEL = "openai:gpt-4o-mini"


def _client(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url + "/v1", api_key=key, max_retries=0, timeout=20)


def _new_user_client(stack: Stack) -> openai.OpenAI:
    user_id = f"resp-{uuid.uuid4().hex[:10]}"
    return _client(stack, str(create_key(stack.base_url, user_id=user_id)["key"]))


def test_the_owner_retrieves_lists_continues_and_deletes(stack: Stack) -> None:
    client = _new_user_client(stack)
    first = client.responses.create(model=MODEL, input="remember the word teal")

    found = client.responses.retrieve(first.id)
    assert found.id == first.id
    assert found.output_text == first.output_text
    items = client.responses.input_items.list(first.id)
    assert [item.id for item in items.data]
    assert "teal" in str(items.data[0])

    follow_up = client.responses.create(
        model=MODEL, input="which word?", previous_response_id=first.id
    )
    assert stack.openai_fake.last_request.json_object()["previous_response_id"] == first.id
    # The upstream counted the earlier turn as input too.
    assert follow_up.usage is not None and first.usage is not None
    assert follow_up.usage.input_tokens > first.usage.input_tokens

    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=MODEL, input="again", previous_response_id=first.id)
    assert refused.value.body["code"] == "previous_response_not_found"  # type: ignore[index]


def test_a_streamed_response_can_be_continued(stack: Stack) -> None:
    client = _new_user_client(stack)
    with client.responses.stream(model=MODEL, input="stream me") as events:
        final = events.get_final_response()
    assert client.responses.retrieve(final.id).id == final.id
    follow_up = client.responses.create(
        model=MODEL, input="and then?", previous_response_id=final.id
    )
    assert follow_up.status == "completed"


def test_someone_elses_response_does_not_exist_for_them(stack: Stack) -> None:
    owner, other = _new_user_client(stack), _new_user_client(stack)
    mine = owner.responses.create(model=MODEL, input="private notes")
    stack.openai_fake.clear()

    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(mine.id)
    with pytest.raises(openai.BadRequestError) as refused:
        other.responses.create(model=MODEL, input="go on", previous_response_id=mine.id)
    assert refused.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert stack.openai_fake.requests == []

    assert owner.responses.retrieve(mine.id).id == mine.id


def test_unstored_responses_and_other_instances(stack: Stack) -> None:
    client = _new_user_client(stack)
    unstored = client.responses.create(model=MODEL, input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)

    stored = client.responses.create(model=MODEL, input="kept")
    with pytest.raises(openai.BadRequestError) as elsewhere:
        client.responses.create(
            model="local:gpt-4o-mini", input="continue", previous_response_id=stored.id
        )
    assert "'openai'" in elsewhere.value.message


def test_the_master_key_names_the_user(stack: Stack) -> None:
    user_id = f"resp-{uuid.uuid4().hex[:10]}"
    client = _client(stack, str(create_key(stack.base_url, user_id=user_id)["key"]))
    made = client.responses.create(model=MODEL, input="hello")
    master = _client(stack, MASTER_KEY)

    with pytest.raises(openai.BadRequestError) as unnamed:
        master.responses.retrieve(made.id)
    assert unnamed.value.body["code"] == "user_required"  # type: ignore[index]
    assert unnamed.value.body["param"] == "user"  # type: ignore[index]
    assert "'user' (or the X-Otari-User header)" in unnamed.value.message
    # Every answer carries a request id where the SDK reads it, errors included.
    assert unnamed.value.request_id
    named = master.responses.retrieve(made.id, extra_headers={"X-Otari-User": user_id})
    assert named.id == made.id
    assert named._request_id


def test_query_parameters_reach_the_upstream(stack: Stack) -> None:
    client = _new_user_client(stack)
    made = client.responses.create(model=MODEL, input="hello")
    include = ["message.output_text.logprobs", "reasoning.encrypted_content"]
    client.responses.retrieve(made.id, include=include)  # type: ignore[list-item]
    sent = stack.openai_fake.last_request
    assert sent.path == f"/v1/responses/{made.id}"
    assert urllib.parse.parse_qs(sent.raw_query)["include[]"] == include

    with pytest.raises(openai.BadRequestError) as streamed:
        client.responses.retrieve(made.id, stream=True)
    assert streamed.value.body["param"] == "stream"  # type: ignore[index]


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("background", True, "background"),
        ("conversation", "conv_someone_elses", "conversation"),
        ("input", [{"type": "item_reference", "id": "msg_someone_elses"}], "input"),
    ],
)
def test_background_conversations_and_item_references_are_refused(
    stack: Stack, field: str, value: object, param: str
) -> None:
    client = _new_user_client(stack)
    stack.openai_fake.clear()
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=MODEL, input="later", extra_body={field: value})
    assert refused.value.body["param"] == param  # type: ignore[index]
    assert stack.openai_fake.requests == []
