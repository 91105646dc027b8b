"""``/v1/batches``: OpenAI's Batch API, per user (logic in ``pipeline/batches.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from otari_gateway.api.body import read_json_object
from otari_gateway.api.files import JSON, Named
from otari_gateway.api.openapi import BATCH_CREATE_BODY, object_responses
from otari_gateway.pipeline.batches import Batches
from otari_gateway.pipeline.request import Caller


def batches_router(
    batches: Batches, caller: Callable[[Request], Awaitable[Caller]], body_limit: int
) -> APIRouter:
    router = APIRouter(tags=["batches"])
    authenticated = Depends(caller)

    @router.post(
        "/v1/batches",
        openapi_extra={"requestBody": BATCH_CREATE_BODY},
        responses=object_responses("The batch object"),
    )
    async def create_batch(request: Request, named: Named, who: Caller = authenticated) -> Response:
        body = await read_json_object(
            request.receive, body_limit, request.headers.get("content-length")
        )
        return Response(await batches.create(who, body, named), media_type=JSON)

    @router.get("/v1/batches", responses=object_responses("The caller's batches, newest first"))
    async def list_batches(
        named: Named,
        after: str | None = None,
        limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
        who: Caller = authenticated,
    ) -> Response:
        listing = await batches.listing(who, named, after=after, limit=limit)
        return Response(listing, media_type=JSON)

    @router.get(
        "/v1/batches/{batch_id}",
        responses=object_responses("The batch object; a finished batch is billed once"),
    )
    async def retrieve_batch(batch_id: str, named: Named, who: Caller = authenticated) -> Response:
        return Response(await batches.retrieve(who, named, batch_id), media_type=JSON)

    @router.post("/v1/batches/{batch_id}/cancel", responses=object_responses("The batch object"))
    async def cancel_batch(batch_id: str, named: Named, who: Caller = authenticated) -> Response:
        return Response(await batches.cancel(who, named, batch_id), media_type=JSON)

    return router
