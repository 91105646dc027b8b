"""What files and batches share: who owns them, which upstream holds them, their JSON.

Files and batches are objects at an OpenAI-wire upstream; the gateway relays their API and
keeps, per object, the user it belongs to (``store/objects_repo.py``). A caller asking for
an object that is not theirs gets the same 404 as for one that does not exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeGuard, TypeVar

import orjson

from otari_gateway.errors import InvalidRequest, NotFound, UpstreamError
from otari_gateway.pipeline.admission import Admission
from otari_gateway.pipeline.request import Caller
from otari_gateway.pipeline.routing import Router, Target
from otari_gateway.providers.base import Operation, Provider, RestUpstream, UpstreamReply
from otari_gateway.store.access import UserRecord
from otari_gateway.store.objects_repo import Page

# Where a master-key caller names the user it acts for (form or JSON field, query
# parameter, or header).
Owned = TypeVar("Owned")
NAMED_USER = "user"
NAMED_USER_ELSEWHERE = " (or the X-Otari-User header)"


class ObjectAccess:
    """Owners and upstreams of files and batches."""

    def __init__(self, router: Router, admission: Admission) -> None:
        self._router = router
        self._admission = admission

    async def owner(
        self, caller: Caller, named: str | None, *, creates: bool = False
    ) -> UserRecord:
        """The user the caller acts for; 403 when blocked or unknown. A master-key call
        that ``creates`` an object makes the user on first use, like a generation request
        (reads never do)."""
        user_id = self._admission.acting_user(caller, named, NAMED_USER, also=NAMED_USER_ELSEWHERE)
        return await self._admission.user(user_id, create=creates and caller.is_master)

    async def owned(
        self,
        caller: Caller,
        named: str | None,
        kind: str,
        object_id: str,
        find: Callable[[str, str], Awaitable[Owned | None]],
    ) -> Owned:
        """``find(object_id, user_id)``'s row for the caller's user, else a 404."""
        user = await self.owner(caller, named)
        found = await find(object_id, user.user_id)
        if found is None:
            raise not_found(kind, object_id)
        return found

    def openai_instances(self) -> list[str]:
        return [
            name for name, provider in self._router.instances.items() if _serves_objects(provider)
        ]

    def upstream(self, instance: str) -> RestUpstream:
        provider = self._router.instances.get(instance)
        if provider is None or not _serves_objects(provider):
            raise InvalidRequest(
                f"provider '{instance}' is not an OpenAI-compatible provider of this gateway",
                param="provider",
                code="unsupported_provider",
            )
        return provider

    def target(self, instance: str, model: str) -> Target:
        """Where an object's model runs (for ``allowed_models`` and the price)."""
        self.upstream(instance)
        return Target(instance, model, self._router.instances[instance])


def not_found(kind: str, object_id: str, param: str | None = None) -> NotFound:
    """OpenAI's wording for an unknown (or someone else's) object."""
    return NotFound(f"No such {kind}: '{object_id}'", param=param, code="not_found")


def upstream_object(reply: UpstreamReply, instance: str) -> dict[str, Any]:
    """The upstream's JSON object, which must carry a string ``id``."""
    try:
        found = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        found = None
    if not isinstance(found, dict) or not isinstance(found.get("id"), str) or not found["id"]:
        raise UpstreamError(f"provider '{instance}' answered without an object id")
    return found


def list_body(page: Page) -> bytes:
    """OpenAI's cursor page: ``{object: list, data, first_id, last_id, has_more}``."""
    data = page.objects
    return orjson.dumps(
        {
            "object": "list",
            "data": data,
            "first_id": data[0].get("id") if data else None,
            "last_id": data[-1].get("id") if data else None,
            "has_more": page.has_more,
        }
    )


def relays(provider: Provider, *operations: Operation) -> TypeGuard[RestUpstream]:
    """Whether ``provider`` serves these operations and relays plain REST calls for them."""
    served = provider.capabilities.operations
    return all(op in served for op in operations) and isinstance(provider, RestUpstream)


def _serves_objects(provider: Provider) -> TypeGuard[RestUpstream]:
    return relays(provider, Operation.FILES, Operation.BATCHES)
