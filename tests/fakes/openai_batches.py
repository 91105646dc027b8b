"""The fake OpenAI API's Files and Batches routes, on their real wire formats.

* ``POST /v1/files`` (multipart ``file`` + ``purpose``): stores the bytes; the file object
  is ``{id, object: file, bytes, created_at, filename, purpose, status: processed,
  expires_at, status_details}``. ``GET /v1/files`` lists every file (newest first);
  ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content`` (``application/octet-stream``) and
  ``DELETE /v1/files/{id}`` (``{id, object, deleted}``) act on one; an unknown id is a 404.
* ``POST /v1/batches`` ``{input_file_id, endpoint, completion_window, metadata?}``: the file
  must be a ``batch`` file whose lines all name one model, the endpoint one OpenAI batches
  and the window ``24h``; the batch starts ``validating``. ``POST /v1/batches/{id}/cancel``
  answers ``cancelling`` and the batch reads ``cancelled`` from then on.
  ``GET /v1/batches`` lists (newest first, ``limit``/``after``).
* ``complete_batch(id, usage)`` finishes a batch as OpenAI does: ``completed``, an output
  file with one response line per request, ``request_counts`` and the given ``usage``.
* ``run_batch(id, completed, usage)`` puts a batch ``in_progress`` with its first
  ``completed`` requests answered; cancelled from there, it ends as OpenAI's do, with
  partial results: ``cancelled``, an output file answering those requests, their count
  and ``usage`` (left out when None, as batch APIs without usage totals do).
* Each answer in an output file carries ``REQUEST_USAGE`` (``/v1/responses``:
  ``REQUEST_RESPONSES_USAGE``) as its body's ``usage``.

Ids are random like OpenAI's, so two fakes never hand out the same one.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

import orjson

from tests.fakes.openai_media import OpenAIMediaRoutes
from tests.fakes.server import FormUpload, Handler, JsonReply, RawReply, RecordedRequest, Reply

BATCH_ENDPOINTS = frozenset(
    {"/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions"}
)
FILE_PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
_FILE_PATH = re.compile(r"^/v1/files/(?P<id>[^/]+)(?P<content>/content)?$")
_BATCH_PATH = re.compile(r"^/v1/batches/(?P<id>[^/]+)(?P<cancel>/cancel)?$")
REQUEST_USAGE = {
    "prompt_tokens": 5_000,
    "completion_tokens": 2_000,
    "total_tokens": 7_000,
    "prompt_tokens_details": {"cached_tokens": 1_000},
    "completion_tokens_details": {"reasoning_tokens": 50},
}
REQUEST_RESPONSES_USAGE = {
    "input_tokens": 5_000,
    "output_tokens": 2_000,
    "total_tokens": 7_000,
    "input_tokens_details": {"cached_tokens": 1_000},
    "output_tokens_details": {"reasoning_tokens": 50},
}


def _lines(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


class OpenAIBatchRoutes(OpenAIMediaRoutes):
    """Base of ``FakeOpenAI`` holding the Files and Batches routes and their state."""

    form_paths = OpenAIMediaRoutes.form_paths | {"/v1/files"}

    def __init__(self, api_key: str, *, stream_interval: float = 0.0) -> None:
        super().__init__(api_key, stream_interval=stream_interval)
        # Re-entrant: a batch turning cancelled adds its output file under the same hold.
        self._store_lock = threading.RLock()
        self.files: dict[str, dict[str, Any]] = {}
        self.file_data: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}

    def reset(self) -> None:
        super().reset()
        with self._store_lock:
            self.files.clear()
            self.file_data.clear()
            self.batches.clear()

    def batch_routes(self) -> Mapping[tuple[str, str], Handler]:
        return {
            ("POST", "/v1/files"): self._upload,
            ("GET", "/v1/files"): self._list_files,
            ("POST", "/v1/batches"): self._create_batch,
            ("GET", "/v1/batches"): self._list_batches,
        }

    def handler_for(self, method: str, path: str) -> Handler | None:
        found = super().handler_for(method, path)
        if found is not None:
            return found
        if match := _FILE_PATH.match(path):
            file_id, content = match["id"], bool(match["content"])
            if method == "GET":
                return lambda r: self._file_content(file_id) if content else self._file(file_id)
            if method == "DELETE" and not content:
                return lambda r: self._delete_file(file_id)
        if match := _BATCH_PATH.match(path):
            batch_id, cancel = match["id"], bool(match["cancel"])
            if method == "GET" and not cancel:
                return lambda r: self._batch(batch_id)
            if method == "POST" and cancel:
                return lambda r: self._cancel(batch_id)
        return None

    def takes_json(self, method: str, path: str) -> bool:
        # Cancelling a batch is a POST without a body.
        return super().takes_json(method, path) and not _BATCH_PATH.match(path)

    # ----------------------------------------------------------------- test API
    def add_file(self, filename: str, data: bytes, purpose: str) -> dict[str, Any]:
        file = {
            "id": f"file-{secrets.token_hex(12)}",
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        with self._store_lock:
            self.files[file["id"]] = file
            self.file_data[file["id"]] = data
        return file

    def complete_batch(
        self, batch_id: str, usage: Mapping[str, Any], *, failed: int = 0
    ) -> dict[str, Any]:
        """Finish the batch: an output file answering each request, counts and ``usage``."""
        with self._store_lock:
            batch = self.batches[batch_id]
            requests = _lines(self.file_data[batch["input_file_id"]])
        out = self._output_file(batch, requests)
        now = int(time.time())
        with self._store_lock:
            batch.update(
                status="completed",
                output_file_id=out["id"],
                in_progress_at=now,
                finalizing_at=now,
                completed_at=now,
                request_counts={
                    "total": len(requests),
                    "completed": len(requests) - failed,
                    "failed": failed,
                },
                usage=dict(usage),
            )
            return dict(batch)

    def run_batch(self, batch_id: str, completed: int, usage: Mapping[str, Any] | None) -> None:
        """The batch is running with its first ``completed`` requests answered."""
        with self._store_lock:
            batch = self.batches[batch_id]
            counts = {**batch["request_counts"], "completed": completed}
            batch.update(
                status="in_progress", in_progress_at=int(time.time()), request_counts=counts
            )
            if usage is not None:
                batch["usage"] = dict(usage)

    def _output_file(
        self, batch: Mapping[str, Any], requests: list[dict[str, Any]]
    ) -> dict[str, Any]:
        usage = REQUEST_RESPONSES_USAGE if batch["endpoint"] == "/v1/responses" else REQUEST_USAGE
        body = {"model": batch["model"], "usage": usage}
        output = b"".join(
            orjson.dumps(
                {
                    "id": f"batch_req_{index}",
                    "custom_id": line.get("custom_id"),
                    "response": {"status_code": 200, "body": body},
                    "error": None,
                }
            )
            + b"\n"
            for index, line in enumerate(requests)
        )
        return self.add_file("batch_output.jsonl", output, "batch_output")

    # ----------------------------------------------------------------- files
    def _upload(self, request: RecordedRequest) -> Reply:
        form = request.form or {}
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, FormUpload):
            return self.error_reply(400, "Missing required parameter: 'file'.")
        if purpose not in FILE_PURPOSES:
            return self.error_reply(400, f"Invalid value for 'purpose': {purpose!r}.")
        if purpose == "batch":
            try:
                _lines(upload.data)
            except orjson.JSONDecodeError:
                return self.error_reply(400, "The batch input file is not valid JSONL.")
        return JsonReply(self.add_file(upload.filename, upload.data, purpose))

    def _missing_file(self, file_id: str) -> JsonReply:
        return self.error_reply(404, f"No such File object: {file_id}")

    def _file(self, file_id: str) -> Reply:
        with self._store_lock:
            file = self.files.get(file_id)
        return JsonReply(file) if file is not None else self._missing_file(file_id)

    def _file_content(self, file_id: str) -> Reply:
        with self._store_lock:
            data = self.file_data.get(file_id)
        if data is None:
            return self._missing_file(file_id)
        return RawReply(data, "application/octet-stream")

    def _delete_file(self, file_id: str) -> Reply:
        with self._store_lock:
            file = self.files.pop(file_id, None)
            self.file_data.pop(file_id, None)
        if file is None:
            return self._missing_file(file_id)
        return JsonReply({"id": file_id, "object": "file", "deleted": True})

    def _list_files(self, request: RecordedRequest) -> Reply:
        with self._store_lock:
            files = list(reversed(self.files.values()))
        purpose = request.query.get("purpose")
        data = [f for f in files if purpose is None or f["purpose"] == purpose]
        return JsonReply({"object": "list", "data": data, "has_more": False})

    # ----------------------------------------------------------------- batches
    def _create_batch(self, request: RecordedRequest) -> Reply:
        body = request.json_object()
        file_id, endpoint = body.get("input_file_id"), body.get("endpoint")
        with self._store_lock:
            file = self.files.get(str(file_id))
            data = self.file_data.get(str(file_id), b"")
        if file is None:
            return self._missing_file(str(file_id))
        if file["purpose"] != "batch":
            return self.error_reply(400, "The input file must have purpose 'batch'.")
        if endpoint not in BATCH_ENDPOINTS:
            return self.error_reply(400, f"Invalid value for 'endpoint': {endpoint!r}.")
        if body.get("completion_window") != "24h":
            return self.error_reply(400, "Invalid value for 'completion_window'.")
        models = {line.get("body", {}).get("model") for line in _lines(data)}
        if len(models) != 1:
            return self.error_reply(400, "Batch input files must name exactly one model.")
        now = int(time.time())
        batch = {
            "id": f"batch_{secrets.token_hex(12)}",
            "object": "batch",
            "endpoint": endpoint,
            "model": models.pop(),
            "errors": None,
            "input_file_id": file_id,
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + 86_400,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": len(_lines(data)), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }
        with self._store_lock:
            self.batches[batch["id"]] = batch
        return JsonReply(batch)

    def _batch(self, batch_id: str) -> Reply:
        with self._store_lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return self.error_reply(404, f"No such Batch object: {batch_id}")
            if batch["status"] == "cancelling":
                batch.update(status="cancelled", cancelled_at=int(time.time()))
                done = batch["request_counts"]["completed"]
                if done:
                    # Partial results: the answers to the requests that ran before the cancel.
                    requests = _lines(self.file_data[batch["input_file_id"]])[:done]
                    batch["output_file_id"] = self._output_file(batch, requests)["id"]
            return JsonReply(dict(batch))

    def _cancel(self, batch_id: str) -> Reply:
        with self._store_lock:
            batch = self.batches.get(batch_id)
            if batch is not None and batch["status"] in ("validating", "in_progress"):
                batch.update(status="cancelling", cancelling_at=int(time.time()))
            found = dict(batch) if batch is not None else None
        if found is None:
            return self.error_reply(404, f"No such Batch object: {batch_id}")
        return JsonReply(found)

    def _list_batches(self, request: RecordedRequest) -> Reply:
        with self._store_lock:
            batches = list(reversed(self.batches.values()))
        after = request.query.get("after")
        if after is not None:
            ids = [b["id"] for b in batches]
            batches = batches[ids.index(after) + 1 :] if after in ids else []
        limit = int(request.query.get("limit") or 20)
        page = batches[:limit]
        return JsonReply(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(batches) > limit,
            }
        )
