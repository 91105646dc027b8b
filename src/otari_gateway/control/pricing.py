"""Managed model prices: versioned rows keyed by ``model_key`` and ``effective_at``.

Prices from the config file's ``pricing:`` block are listed beside them (``source:
"config"``), as the reference gateway lists them; a managed row for the same key takes
precedence, as it does when billing. Config prices change only with the file.

Writing the same ``effective_at`` again replaces that version. The request path reads
every row through ``load_price_rows`` into its ``PriceBook``; ``pricing_changed`` after
each write makes the writing process reload at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from otari_gateway.billing.pricing import PRICE_FIELDS, PriceRow, price_from_fields
from otari_gateway.control.changes import ChangeListener
from otari_gateway.control.outage import available
from otari_gateway.control.values import as_utc
from otari_gateway.errors import Conflict, InvalidRequest, NotFound
from otari_gateway.store import pricing_repo
from otari_gateway.store.database import Database
from otari_gateway.store.models import ModelPrice
from otari_gateway.store.types import to_money, utcnow


@dataclass(frozen=True, slots=True)
class PriceView:
    id: str
    model_key: str
    input_price_per_million: Decimal | None
    output_price_per_million: Decimal | None
    cache_read_price_per_million: Decimal | None
    cache_write_price_per_million: Decimal | None
    price_per_image: Decimal | None
    price_per_request: Decimal | None
    price_per_audio_second: Decimal | None
    price_per_million_characters: Decimal | None
    effective_at: datetime
    created_at: datetime
    source: str = "api"


@dataclass(frozen=True, slots=True)
class NewPrice:
    model_key: str
    input_price_per_million: Decimal | None = None
    output_price_per_million: Decimal | None = None
    cache_read_price_per_million: Decimal | None = None
    cache_write_price_per_million: Decimal | None = None
    price_per_image: Decimal | None = None
    price_per_request: Decimal | None = None
    price_per_audio_second: Decimal | None = None
    price_per_million_characters: Decimal | None = None
    effective_at: datetime | None = None


def _view(row: ModelPrice) -> PriceView:
    return PriceView(
        id=row.id,
        model_key=row.model_key,
        input_price_per_million=row.input_price_per_million,
        output_price_per_million=row.output_price_per_million,
        cache_read_price_per_million=row.cache_read_price_per_million,
        cache_write_price_per_million=row.cache_write_price_per_million,
        price_per_image=row.price_per_image,
        price_per_request=row.price_per_request,
        price_per_audio_second=row.price_per_audio_second,
        price_per_million_characters=row.price_per_million_characters,
        effective_at=row.effective_at,
        created_at=row.created_at,
    )


def check_model_key(model_key: str) -> str:
    provider, colon, model = model_key.partition(":")
    if not colon or not provider.strip() or not model.strip():
        raise InvalidRequest(f"model_key '{model_key}' must be 'provider:model'", param="model_key")
    return model_key


def _prices(spec: NewPrice) -> dict[str, Decimal | None]:
    prices: dict[str, Decimal | None] = {}
    for name in PRICE_FIELDS:
        value: Decimal | None = getattr(spec, name)
        if value is not None and value < 0:
            raise InvalidRequest(f"{name} must be at least 0", param=name)
        prices[name] = None if value is None else to_money(value)
    if all(value is None for value in prices.values()):
        raise InvalidRequest(
            "at least one price field is required: " + ", ".join(PRICE_FIELDS),
            param="input_price_per_million",
        )
    return prices


def _not_found(model_key: str) -> NotFound:
    return NotFound(f"No pricing for model '{model_key}'", param="model_key")


def _configured_view(model_key: str, fields: Mapping[str, Any], since: datetime) -> PriceView:
    """A config ``pricing:`` entry shown as a row would be (never stored)."""
    prices = {
        name: to_money(Decimal(str(value)))
        for name, value in fields.items()
        if name in PRICE_FIELDS and value is not None
    }
    row = ModelPrice(
        id=f"config:{model_key}",
        model_key=model_key,
        effective_at=since,
        created_at=since,
        **prices,
    )
    return replace(_view(row), source="config")


class PricingService:
    def __init__(
        self,
        db: Database,
        changes: ChangeListener,
        configured: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self._db = db
        self._changes = changes
        since = utcnow()
        self._configured = {
            key: _configured_view(key, fields, since) for key, fields in (configured or {}).items()
        }

    async def set_price(self, spec: NewPrice) -> PriceView:
        model_key = check_model_key(spec.model_key)
        prices = _prices(spec)
        now = utcnow()
        effective_at = now if spec.effective_at is None else as_utc(spec.effective_at)
        async with available(self._db.session()) as session:
            row = await pricing_repo.upsert_price(session, model_key, effective_at, prices, now=now)
            view = _view(row)
        self._changes.pricing_changed()
        return view

    async def list_prices(self, *, all_versions: bool = False) -> list[PriceView]:
        """The version in effect per model key, or with ``all_versions`` every version
        (scheduled ones included), newest first within a key."""
        async with available(self._db.session()) as session:
            if all_versions:
                rows = await pricing_repo.all_prices(session)
            else:
                rows = await pricing_repo.current_prices(session, utcnow())
            managed = [_view(row) for row in rows]
        shown = {view.model_key for view in managed}
        configured = [view for key, view in self._configured.items() if key not in shown]
        return managed + sorted(configured, key=lambda view: view.model_key)

    async def get(self, model_key: str) -> PriceView:
        async with available(self._db.session()) as session:
            rows = await pricing_repo.current_prices(session, utcnow(), model_key)
        if rows:
            return _view(rows[0])
        configured = self._configured.get(model_key)
        if configured is None:
            raise _not_found(model_key)
        return configured

    async def delete(self, model_key: str) -> None:
        """Every version of the key; 404 when there is none."""
        async with available(self._db.session()) as session:
            if not await pricing_repo.count_versions(session, model_key):
                if model_key in self._configured:
                    raise Conflict(
                        f"the price of '{model_key}' is set in the config file's pricing: "
                        "block; edit the file to change or remove it",
                        param="model_key",
                    )
                raise _not_found(model_key)
            await pricing_repo.delete_prices(session, model_key)
        self._changes.pricing_changed()


async def load_price_rows(db: Database) -> list[PriceRow]:
    """Every managed price version, for the request path's ``PriceBook``."""
    async with db.session() as session:
        rows = await pricing_repo.all_prices(session)
        return [
            PriceRow(
                model_key=row.model_key,
                effective_at=row.effective_at,
                price=price_from_fields({name: getattr(row, name) for name in PRICE_FIELDS}),
            )
            for row in rows
        ]
