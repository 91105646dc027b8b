"""``/v1/files``: uploads relayed to an OpenAI-wire upstream, owned per user.

Which upstream: a ``batch`` file's lines name it (``pipeline/batch_input.py``: one
instance, one model, rewritten to the bare model, checked against ``allowed_models`` and
for a price before anything is uploaded). Any other file goes to the instance the
gateway-only ``provider`` form field names, or to the only OpenAI-wire instance when
there is exactly one. Listings come from the gateway's own table (the upstream's list
would show every user's files); retrieve, content and delete are relayed after the
ownership check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from otari_gateway.errors import InvalidRequest, UpstreamNotFound
from otari_gateway.pipeline.admission import Admission, check_models
from otari_gateway.pipeline.batch_input import read_batch_input
from otari_gateway.pipeline.form import FormFile, encode_form, form_content_type
from otari_gateway.pipeline.request import Caller
from otari_gateway.pipeline.routing import Router, Target
from otari_gateway.pipeline.upstream_objects import (
    ObjectAccess,
    list_body,
    upstream_object,
)
from otari_gateway.providers.base import UpstreamReply
from otari_gateway.store import objects_repo
from otari_gateway.store.access import UserRecord
from otari_gateway.store.database import Database
from otari_gateway.store.objects_repo import FileRow

BATCH_PURPOSE = "batch"
# Form fields the gateway reads and the upstream never sees.
_GATEWAY_FIELDS = ("provider", "user")
_LIST_DEFAULT = 10_000


class Files:
    def __init__(
        self, db: Database, router: Router, admission: Admission, access: ObjectAccess
    ) -> None:
        self._db = db
        self._router = router
        self._admission = admission
        self._access = access

    async def upload(
        self, caller: Caller, form: Mapping[str, Any], named: str | None, request_id: str
    ) -> bytes:
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, FormFile):
            raise InvalidRequest("'file' must be an uploaded file", param="file")
        if not isinstance(purpose, str) or not purpose:
            raise InvalidRequest("'purpose' is required", param="purpose")
        user = await self._access.owner(caller, _text(form, "user") or named, creates=True)
        fields = {name: value for name, value in form.items() if name not in _GATEWAY_FIELDS}
        model: str | None = None
        if purpose == BATCH_PURPOSE:
            target, fields["file"] = await self._batch_file(caller, user, upload)
            instance, model = target.instance, target.model
            named_provider = _text(form, "provider")
            if named_provider is not None and named_provider != instance:
                raise InvalidRequest(
                    f"'provider' is '{named_provider}' but the batch file's lines name "
                    f"'{instance}'",
                    param="provider",
                )
        else:
            instance = self._instance_for(_text(form, "provider"))
        reply = await self._access.upstream(instance).call(
            "POST",
            "/files",
            body=encode_form(fields, request_id),
            headers={"Content-Type": form_content_type(request_id)},
        )
        found = upstream_object(reply, instance)
        await objects_repo.add_file(
            self._db,
            file_id=found["id"],
            instance=instance,
            user_id=user.user_id,
            purpose=purpose,
            model=model,
            upstream_object=found,
        )
        return reply.body

    async def _batch_file(
        self, caller: Caller, user: UserRecord, upload: FormFile
    ) -> tuple[Target, FormFile]:
        """Where the batch file's lines go, once its model is allowed and priced, and the
        file with bare models."""
        batch = read_batch_input(upload.data, self._router.resolve)
        check_models(caller.key, user, batch.target, batch.requested, " (in the batch file)")
        await self._admission.price(batch.target)
        return batch.target, replace(upload, data=batch.data)

    def _instance_for(self, provider: str | None) -> str:
        if provider is not None:
            self._access.upstream(provider)
            return provider
        instances = self._access.openai_instances()
        if len(instances) == 1:
            return instances[0]
        raise InvalidRequest(
            "name the provider to store this file with in the 'provider' form field "
            f"(one of: {', '.join(sorted(instances)) or 'none configured'})",
            param="provider",
            code="provider_required",
        )

    async def owned(self, caller: Caller, named: str | None, file_id: str) -> FileRow:
        return await self._access.owned(caller, named, "File", file_id, self._file_of)

    async def _file_of(self, file_id: str, user_id: str) -> FileRow | None:
        return await objects_repo.file_of(self._db, file_id, user_id)

    async def listing(
        self,
        caller: Caller,
        named: str | None,
        *,
        purpose: str | None,
        after: str | None,
        limit: int | None,
        order: str,
    ) -> bytes:
        if order not in ("asc", "desc"):
            raise InvalidRequest("'order' must be 'asc' or 'desc'", param="order")
        user = await self._access.owner(caller, named)
        page = await objects_repo.list_files(
            self._db,
            user.user_id,
            purpose=purpose,
            after=after,
            limit=limit or _LIST_DEFAULT,
            newest_first=order == "desc",
        )
        return list_body(page)

    async def retrieve(self, caller: Caller, named: str | None, file_id: str) -> UpstreamReply:
        found = await self.owned(caller, named, file_id)
        return await self._access.upstream(found.instance).call("GET", f"/files/{file_id}")

    async def content(self, caller: Caller, named: str | None, file_id: str) -> UpstreamReply:
        found = await self.owned(caller, named, file_id)
        upstream = self._access.upstream(found.instance)
        return await upstream.call("GET", f"/files/{file_id}/content")

    async def delete(self, caller: Caller, named: str | None, file_id: str) -> UpstreamReply:
        found = await self.owned(caller, named, file_id)
        try:
            reply = await self._access.upstream(found.instance).call("DELETE", f"/files/{file_id}")
        except UpstreamNotFound:
            # Gone upstream already (expired): it is gone for the gateway too.
            await objects_repo.delete_file(self._db, file_id)
            raise
        await objects_repo.delete_file(self._db, file_id)
        return reply


def _text(form: Mapping[str, Any], name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) and value else None
