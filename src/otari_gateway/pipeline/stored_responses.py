"""Responses that a native Responses upstream stores: whose they are and where they live.

One upstream account serves every user of the gateway, and it hands any caller any stored
response by id. So the gateway records the owner and instance of each response it relays
(``store`` not false; a stream's at ``response.created``), and then:

- a request naming ``previous_response_id`` must name one of the caller's own responses,
  made through the same provider instance (otherwise OpenAI's answer for an unknown id),
  and ``conversation`` (an upstream object no user of the gateway can have made) and
  ``item_reference`` input items (an id that reaches any user's stored item) are refused;
- ``GET`` and ``DELETE /v1/responses/{id}`` and ``GET …/input_items`` are relayed to the
  instance that holds the response, after the same ownership check. (No ``cancel``: only
  background responses can be cancelled, and the gateway refuses those, since their
  usage is known only after the answer that would bill it.)

Bridged responses (providers without a Responses API) are stored nowhere; their ids are
unknown here, and ``previous_response_id`` is refused for them by name before this runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import structlog

from otari_gateway.errors import InvalidRequest, UpstreamNotFound
from otari_gateway.pipeline.request import Caller
from otari_gateway.pipeline.routing import Router, Target
from otari_gateway.pipeline.upstream_objects import ObjectAccess, not_found, relays
from otari_gateway.providers.base import Operation, RestUpstream, UpstreamReply
from otari_gateway.store import objects_repo
from otari_gateway.store.database import Database

log = structlog.get_logger(__name__)

Query = Sequence[tuple[str, str]]


class StoredResponses:
    def __init__(self, db: Database, router: Router, access: ObjectAccess) -> None:
        self._db = db
        self._router = router
        self._access = access

    async def check_state(self, body: Mapping[str, Any], target: Target, user_id: str) -> None:
        """Refuse stored state the user cannot be shown to own: a ``previous_response_id``
        that is not theirs (or lives elsewhere), any ``conversation`` (the gateway relays
        no Conversations API, so one was made outside it), and ``item_reference`` input
        items (an item id names it account-wide, whoever made it)."""
        if body.get("conversation") is not None:
            raise InvalidRequest(
                "'conversation' is not supported through the gateway; chain responses with "
                "'previous_response_id'",
                param="conversation",
                code="unsupported_parameter",
            )
        items = body.get("input")
        if isinstance(items, list) and any(
            isinstance(item, Mapping) and item.get("type") == "item_reference" for item in items
        ):
            raise InvalidRequest(
                "'item_reference' input items are not supported through the gateway; send "
                "the items themselves, or continue a response with 'previous_response_id'",
                param="input",
                code="unsupported_parameter",
            )
        previous = body.get("previous_response_id")
        if previous is None:
            return
        if not isinstance(previous, str) or not previous:
            raise InvalidRequest(
                "'previous_response_id' must be a response id", param="previous_response_id"
            )
        instance = await objects_repo.response_instance(self._db, previous, user_id)
        if instance is None:
            raise InvalidRequest(
                f"Previous response with id '{previous}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        if instance != target.instance:
            raise InvalidRequest(
                f"response '{previous}' is stored by provider '{instance}': continue it with "
                "a model of that provider",
                param="previous_response_id",
            )

    async def remember(
        self, response_id: str | None, body: Mapping[str, Any], target: Target, user_id: str
    ) -> None:
        """Record a response the upstream stores. The answer is delivered even if this
        fails (the upstream did the work); the response is then not retrievable here."""
        if response_id is None or body.get("store") is False:
            return
        try:
            await objects_repo.add_response(
                self._db, response_id=response_id, instance=target.instance, user_id=user_id
            )
        except Exception:
            # The answer matters more than the record.
            log.exception("responses.record_failed", response_id=response_id)

    async def retrieve(
        self, caller: Caller, named: str | None, response_id: str, query: Query
    ) -> UpstreamReply:
        if any(name == "stream" and value.lower() == "true" for name, value in query):
            raise InvalidRequest(
                "streaming a stored response again is not supported; retrieve it whole",
                param="stream",
            )
        upstream = await self._owned(caller, named, response_id)
        return await upstream.call("GET", f"/responses/{response_id}", params=query)

    async def input_items(
        self, caller: Caller, named: str | None, response_id: str, query: Query
    ) -> UpstreamReply:
        upstream = await self._owned(caller, named, response_id)
        return await upstream.call("GET", f"/responses/{response_id}/input_items", params=query)

    async def delete(self, caller: Caller, named: str | None, response_id: str) -> UpstreamReply:
        upstream = await self._owned(caller, named, response_id)
        try:
            reply = await upstream.call("DELETE", f"/responses/{response_id}")
        except UpstreamNotFound:
            # Gone upstream already: it is gone for the gateway too.
            await objects_repo.delete_response(self._db, response_id)
            raise
        await objects_repo.delete_response(self._db, response_id)
        return reply

    async def _owned(self, caller: Caller, named: str | None, response_id: str) -> RestUpstream:
        instance = await self._access.owned(
            caller,
            named,
            "response",
            response_id,
            lambda rid, user_id: objects_repo.response_instance(self._db, rid, user_id),
        )
        provider = self._router.instances.get(instance)
        if provider is None or not relays(provider, Operation.RESPONSES):
            # The instance was removed from the configuration since.
            raise not_found("response", response_id)
        return provider


def response_id_of(content: bytes) -> str | None:
    """The id of a Responses JSON answer (None if it has none)."""
    try:
        found = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    response_id = found.get("id") if isinstance(found, dict) else None
    return response_id if isinstance(response_id, str) and response_id else None
