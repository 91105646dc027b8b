"""Stored responses: retrieve, delete, input items (logic in
``pipeline/stored_responses.py``). ``POST /v1/responses`` is a generation route.

With the master key, the user acted for is the ``user`` query parameter or the
``X-Otari-User`` header, as for files.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from otari_gateway.api.files import JSON, Named
from otari_gateway.api.openapi import object_responses
from otari_gateway.pipeline.request import Caller
from otari_gateway.pipeline.stored_responses import Query, StoredResponses

# Read by the gateway (whom to act for), never sent upstream.
_GATEWAY_PARAMS = frozenset({"user"})


def _upstream_query(request: Request) -> Query:
    return [(k, v) for k, v in request.query_params.multi_items() if k not in _GATEWAY_PARAMS]


def responses_router(
    stored: StoredResponses, caller: Callable[[Request], Awaitable[Caller]]
) -> APIRouter:
    router = APIRouter(tags=["responses"])
    authenticated = Depends(caller)

    @router.get(
        "/v1/responses/{response_id}",
        responses=object_responses("The response object, from the upstream that stores it"),
    )
    async def retrieve_response(
        request: Request, response_id: str, named: Named, who: Caller = authenticated
    ) -> Response:
        reply = await stored.retrieve(who, named, response_id, _upstream_query(request))
        return Response(reply.body, media_type=JSON)

    @router.get(
        "/v1/responses/{response_id}/input_items",
        responses=object_responses("The response's input items (a cursor page)"),
    )
    async def response_input_items(
        request: Request, response_id: str, named: Named, who: Caller = authenticated
    ) -> Response:
        reply = await stored.input_items(who, named, response_id, _upstream_query(request))
        return Response(reply.body, media_type=JSON)

    @router.delete(
        "/v1/responses/{response_id}", responses=object_responses("{id, object, deleted}")
    )
    async def delete_response(
        response_id: str, named: Named, who: Caller = authenticated
    ) -> Response:
        reply = await stored.delete(who, named, response_id)
        return Response(reply.body, media_type=JSON)

    return router
