"""The fake OpenAI API's stored responses, on the real wire format.

* A response made with ``store`` not false is kept with its input items (each given an
  ``id``, as OpenAI does). ``previous_response_id`` must name a kept response (else 400
  ``previous_response_not_found``), whose input and output then precede the new input.
* ``GET /v1/responses/{id}`` answers the response, ``DELETE`` ``{id, object: response,
  deleted: true}``, ``GET …/input_items`` a cursor page (``order`` ``desc`` by default,
  ``limit`` 20). An unknown id is a 404.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

from tests.fakes.openai_batches import OpenAIBatchRoutes
from tests.fakes.server import Handler, JsonReply, RecordedRequest, Reply

_RESPONSE_PATH = re.compile(r"^/v1/responses/(?P<id>[^/]+)(?P<sub>/input_items)?$")


class OpenAIResponseStore(OpenAIBatchRoutes):
    def __init__(self, api_key: str, *, stream_interval: float = 0.0) -> None:
        super().__init__(api_key, stream_interval=stream_interval)
        self._responses_lock = threading.Lock()
        self.stored_responses: dict[str, dict[str, Any]] = {}
        self._input_items: dict[str, list[dict[str, Any]]] = {}

    def reset(self) -> None:
        super().reset()
        with self._responses_lock:
            self.stored_responses.clear()
            self._input_items.clear()

    def handler_for(self, method: str, path: str) -> Handler | None:
        found = super().handler_for(method, path)
        if found is not None:
            return found
        match = _RESPONSE_PATH.match(path)
        if match is None:
            return None
        response_id, sub = match["id"], match["sub"]
        handlers: dict[tuple[str, str | None], Handler] = {
            ("GET", None): lambda r: self._retrieve(response_id),
            ("DELETE", None): lambda r: self._delete(response_id),
            ("GET", "/input_items"): lambda r: self._list_input_items(response_id, r),
        }
        return handlers.get((method, sub))

    # ----------------------------------------------------------------- used by _responses
    def earlier_items(self, body: Mapping[str, Any]) -> list[dict[str, Any]] | JsonReply:
        """The conversation before this request: the previous response's input and output."""
        previous = body.get("previous_response_id")
        if previous is None:
            return []
        with self._responses_lock:
            response = self.stored_responses.get(previous)
            items = list(self._input_items.get(previous, ()))
        if response is None:
            return self._unknown_previous(str(previous))
        return items + list(response["output"])

    def keep(self, response: dict[str, Any], items: list[dict[str, Any]]) -> None:
        if response.get("store") is False:
            return
        numbered = [
            {"id": f"msg_in{index}_{response['id']}", **item} if "id" not in item else item
            for index, item in enumerate(items)
        ]
        with self._responses_lock:
            self.stored_responses[response["id"]] = response
            self._input_items[response["id"]] = numbered

    # ----------------------------------------------------------------- routes
    def _missing(self, response_id: str) -> JsonReply:
        return self.error_reply(404, f"Response with id '{response_id}' not found.")

    def _unknown_previous(self, response_id: str) -> JsonReply:
        body = {
            "error": {
                "message": f"Previous response with id '{response_id}' not found.",
                "type": "invalid_request_error",
                "param": "previous_response_id",
                "code": "previous_response_not_found",
            }
        }
        return JsonReply(body, status=400)

    def _retrieve(self, response_id: str) -> Reply:
        with self._responses_lock:
            response = self.stored_responses.get(response_id)
        return self._missing(response_id) if response is None else JsonReply(response)

    def _delete(self, response_id: str) -> Reply:
        with self._responses_lock:
            response = self.stored_responses.pop(response_id, None)
            self._input_items.pop(response_id, None)
        if response is None:
            return self._missing(response_id)
        return JsonReply({"id": response_id, "object": "response", "deleted": True})

    def _list_input_items(self, response_id: str, request: RecordedRequest) -> Reply:
        with self._responses_lock:
            items = self._input_items.get(response_id)
        if items is None:
            return self._missing(response_id)
        ordered = items if request.query.get("order") == "asc" else list(reversed(items))
        limit = int(request.query.get("limit", "20"))
        page = ordered[:limit]
        return JsonReply(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(ordered) > limit,
            }
        )
