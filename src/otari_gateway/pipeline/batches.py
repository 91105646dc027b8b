"""``/v1/batches``: batches relayed to the upstream holding their input file, billed once.

A batch is created from one of the caller's own ``batch`` files, on that file's instance.
No budget is held: what a batch costs is known only once it finishes, so a batch can take
a budget past its limit by at most its own cost (further requests are then refused).

Billing happens when a retrieve sees the batch finished (``completed``, and also
``expired`` or ``cancelled``, whose completed requests the provider bills too): ONE usage
row (endpoint ``batches``, id = the batch id) for the batch object's ``usage`` and its
``request_counts.completed`` at the model's price × ``batch_price_multiplier``
(``billing/cost.batch_cost``). A batch object without ``usage`` that completed requests is
billed for the usage in its output file (``pipeline/batch_output.py``), which holds only
the requests that ran; one that completed none costs nothing. ``settle_batch`` flips
the batch's ``settled`` flag and writes the row and the charge in one transaction, so
concurrent retrieves on any number of workers bill it exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson
import structlog

from otari_gateway.billing.cost import batch_cost
from otari_gateway.billing.pricing import PriceBook
from otari_gateway.config import GatewayConfig
from otari_gateway.errors import InvalidRequest
from otari_gateway.pipeline.admission import Admission, check_models
from otari_gateway.pipeline.batch_output import output_usage
from otari_gateway.pipeline.request import Caller
from otari_gateway.pipeline.upstream_objects import (
    ObjectAccess,
    list_body,
    not_found,
    upstream_object,
)
from otari_gateway.providers.base import RestUpstream
from otari_gateway.providers.registry import provider_type_of
from otari_gateway.store import objects_repo
from otari_gateway.store.database import Database
from otari_gateway.store.objects_repo import BatchRow
from otari_gateway.store.types import utcnow
from otari_gateway.store.usage_writer import UsageRecord
from otari_gateway.translate.usage import usage_from_responses
from otari_gateway.usage import Usage

log = structlog.get_logger(__name__)

ENDPOINT = "batches"
# Statuses after which a batch's usage no longer changes.
FINISHED = frozenset({"completed", "expired", "cancelled"})
_OUTPUT_FIELDS = ("output_file_id", "error_file_id")
_LIST_DEFAULT = 20
ZERO = Decimal(0)


class Batches:
    def __init__(
        self,
        config: GatewayConfig,
        db: Database,
        admission: Admission,
        prices: PriceBook,
        access: ObjectAccess,
    ) -> None:
        self._db = db
        self._admission = admission
        self._prices = prices
        self._access = access
        self._multiplier = config.batch_price_multiplier
        self._provider_types = {
            name: provider_type_of(name, provider) for name, provider in config.providers.items()
        }

    async def create(self, caller: Caller, body: Mapping[str, Any], named: str | None) -> bytes:
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise InvalidRequest(f"'{name}' is required and must be a string", param=name)
        user_field = body.get("user")
        if isinstance(user_field, str) and user_field:
            named = user_field
        user = await self._access.owner(caller, named, creates=True)
        file_id = body["input_file_id"]
        found = await objects_repo.file_of(self._db, file_id, user.user_id)
        if found is None:
            raise not_found("File", file_id, "input_file_id")
        if found.model is None:
            raise InvalidRequest(
                f"file '{file_id}' was not uploaded with purpose 'batch'", param="input_file_id"
            )
        upstream = self._access.upstream(found.instance)
        target = self._access.target(found.instance, found.model)
        check_models(caller.key, user, target, target.selector)
        await self._admission.price(target)
        forwarded = {name: value for name, value in body.items() if name != "user"}
        reply = await upstream.call("POST", "/batches", body=orjson.dumps(forwarded))
        batch = upstream_object(reply, found.instance)
        await objects_repo.add_batch(
            self._db,
            batch_id=batch["id"],
            instance=found.instance,
            user_id=user.user_id,
            api_key_id=caller.key.id if caller.key else None,
            input_file_id=file_id,
            endpoint=body["endpoint"],
            model=found.model,
            upstream_object=batch,
        )
        return reply.body

    async def _owned(self, caller: Caller, named: str | None, batch_id: str) -> BatchRow:
        return await self._access.owned(caller, named, "Batch", batch_id, self._batch_of)

    async def _batch_of(self, batch_id: str, user_id: str) -> BatchRow | None:
        return await objects_repo.batch_of(self._db, batch_id, user_id)

    async def retrieve(self, caller: Caller, named: str | None, batch_id: str) -> bytes:
        row = await self._owned(caller, named, batch_id)
        upstream = self._access.upstream(row.instance)
        reply = await upstream.call("GET", f"/batches/{batch_id}")
        batch = upstream_object(reply, row.instance)
        await objects_repo.save_batch_object(self._db, batch_id, batch)
        if not row.settled and batch.get("status") in FINISHED:
            await self._settle(upstream, row, batch)
        # Only after billing: the output is what the batch is paid for.
        await self._adopt_outputs(upstream, row, batch)
        return reply.body

    async def cancel(self, caller: Caller, named: str | None, batch_id: str) -> bytes:
        row = await self._owned(caller, named, batch_id)
        upstream = self._access.upstream(row.instance)
        reply = await upstream.call("POST", f"/batches/{batch_id}/cancel")
        await objects_repo.save_batch_object(
            self._db, batch_id, upstream_object(reply, row.instance)
        )
        return reply.body

    async def listing(
        self, caller: Caller, named: str | None, *, after: str | None, limit: int | None
    ) -> bytes:
        user = await self._access.owner(caller, named)
        page = await objects_repo.list_batches(
            self._db, user.user_id, after=after, limit=limit or _LIST_DEFAULT
        )
        return list_body(page)

    async def _adopt_outputs(
        self, upstream: RestUpstream, row: BatchRow, batch: Mapping[str, Any]
    ) -> None:
        """The batch's output and error files become its owner's, so they can read them."""
        ids = [batch[name] for name in _OUTPUT_FIELDS if isinstance(batch.get(name), str)]
        if not ids:
            return
        known = await objects_repo.known_file_ids(self._db, ids)
        for file_id in ids:
            if file_id in known:
                continue
            reply = await upstream.call("GET", f"/files/{file_id}")
            await objects_repo.adopt_file(
                self._db,
                file_id=file_id,
                instance=row.instance,
                user_id=row.user_id,
                upstream_object=upstream_object(reply, row.instance),
            )

    async def _settle(
        self, upstream: RestUpstream, row: BatchRow, batch: Mapping[str, Any]
    ) -> None:
        counts = batch.get("request_counts")
        completed = counts.get("completed") if isinstance(counts, Mapping) else None
        requests = completed if isinstance(completed, int) and completed > 0 else 0
        usage = await self._usage(upstream, batch, requests)
        if usage is None:
            return
        provider_type = self._provider_types.get(row.instance, row.instance)
        price = await self._prices.lookup(f"{row.instance}:{row.model}", provider_type, row.model)
        cost = batch_cost(usage, price, requests, self._multiplier) if price else ZERO
        record = UsageRecord(
            id=row.id,
            user_id=row.user_id,
            api_key_id=row.api_key_id,
            timestamp=utcnow(),
            model=row.model,
            provider=row.instance,
            endpoint=ENDPOINT,
            usage=usage,
            cost=cost,
            status="success",
            status_code=200,
            latency_ms=0,
        )
        if await objects_repo.settle_batch(self._db, record):
            log.info("batch.settled", batch_id=row.id, user_id=row.user_id, cost=str(cost))

    @staticmethod
    async def _usage(
        upstream: RestUpstream, batch: Mapping[str, Any], requests: int
    ) -> Usage | None:
        """The batch's usage; None when there is nothing to bill."""
        raw_usage = batch.get("usage")
        if isinstance(raw_usage, Mapping):
            return usage_from_responses(raw_usage)
        output = batch.get("output_file_id")
        if not requests or not isinstance(output, str):
            return None
        reply = await upstream.call("GET", f"/files/{output}/content")
        return output_usage(reply.body, str(batch.get("endpoint") or ""))
