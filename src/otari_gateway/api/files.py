"""``/v1/files``: OpenAI's Files API, per user (logic in ``pipeline/files.py``).

Uploads are read raw with the body size limit and parsed by ``pipeline/form.py``. With the
master key, the user acted for is the ``user`` form field on upload, else the ``user``
query parameter or the ``X-Otari-User`` header.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import Response

from otari_gateway.api.body import read_body
from otari_gateway.api.openapi import FILE_UPLOAD_BODY, object_responses
from otari_gateway.pipeline.files import Files
from otari_gateway.pipeline.form import parse_form
from otari_gateway.pipeline.ids import new_request_id
from otari_gateway.pipeline.request import Caller

JSON = "application/json"


def named_user(
    user: Annotated[
        str | None, Query(description="with the master key: the user acted for")
    ] = None,
    x_otari_user: Annotated[str | None, Header(description="alternative to ?user=")] = None,
) -> str | None:
    return user or x_otari_user or None


Named = Annotated[str | None, Depends(named_user)]


def files_router(
    files: Files, caller: Callable[[Request], Awaitable[Caller]], body_limit: int
) -> APIRouter:
    router = APIRouter(tags=["files"])
    authenticated = Depends(caller)

    @router.post(
        "/v1/files",
        openapi_extra={"requestBody": FILE_UPLOAD_BODY},
        responses=object_responses("The file object"),
    )
    async def upload_file(request: Request, named: Named, who: Caller = authenticated) -> Response:
        raw = await read_body(request.receive, body_limit, request.headers.get("content-length"))
        form = parse_form(raw, request.headers.get("content-type"))
        body = await files.upload(who, form, named, new_request_id())
        return Response(body, media_type=JSON)

    @router.get("/v1/files", responses=object_responses("The caller's files"))
    async def list_files(
        named: Named,
        purpose: str | None = None,
        after: str | None = None,
        limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
        order: Literal["asc", "desc"] = "desc",
        who: Caller = authenticated,
    ) -> Response:
        listing = await files.listing(
            who, named, purpose=purpose, after=after, limit=limit, order=order
        )
        return Response(listing, media_type=JSON)

    @router.get("/v1/files/{file_id}", responses=object_responses("The file object"))
    async def retrieve_file(file_id: str, named: Named, who: Caller = authenticated) -> Response:
        reply = await files.retrieve(who, named, file_id)
        return Response(reply.body, media_type=JSON)

    @router.get(
        "/v1/files/{file_id}/content",
        responses=object_responses("The file's bytes, with the upstream's Content-Type"),
    )
    async def file_content(file_id: str, named: Named, who: Caller = authenticated) -> Response:
        reply = await files.content(who, named, file_id)
        return Response(reply.body, media_type=reply.content_type)

    @router.delete("/v1/files/{file_id}", responses=object_responses("{id, object, deleted}"))
    async def delete_file(file_id: str, named: Named, who: Caller = authenticated) -> Response:
        reply = await files.delete(who, named, file_id)
        return Response(reply.body, media_type=JSON)

    return router
