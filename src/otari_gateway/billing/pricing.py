"""Which price applies to a model: managed rows, then the config file, then genai-prices.

Rows written through ``/v1/pricing`` are versioned by ``effective_at``; the latest row
already in effect wins. They are cached in process and reloaded at most every
``refresh_seconds`` (at once on the process that wrote them).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import anyio
import structlog

from otari_gateway.billing.cost import Price
from otari_gateway.store.types import utcnow

log = structlog.get_logger(__name__)

PRICE_FIELDS = {
    "input_price_per_million": "input_per_million",
    "output_price_per_million": "output_per_million",
    "cache_read_price_per_million": "cache_read_per_million",
    "cache_write_price_per_million": "cache_write_per_million",
    "price_per_image": "per_image",
    "price_per_request": "per_request",
    "price_per_audio_second": "per_audio_second",
    "price_per_million_characters": "per_million_characters",
}

SECONDS_PER_HOUR = 3600
_GENAI_CACHE_SIZE = 4096

# Our provider types whose names differ in genai-prices' data.
_GENAI_PROVIDER_IDS = {"xai": "x-ai", "together": "together", "vllm": None, "ollama": None}


@dataclass(frozen=True, slots=True)
class PriceRow:
    model_key: str
    effective_at: datetime
    price: Price


def price_from_fields(fields: Mapping[str, Any]) -> Price:
    """A ``Price`` from API/config field names (``input_price_per_million`` …)."""

    def read(name: str) -> Decimal | None:
        value = fields.get(name)
        return None if value is None else Decimal(str(value))

    return Price(
        input_per_million=read("input_price_per_million"),
        output_per_million=read("output_price_per_million"),
        cache_read_per_million=read("cache_read_price_per_million"),
        cache_write_per_million=read("cache_write_price_per_million"),
        per_image=read("price_per_image"),
        per_request=read("price_per_request"),
        per_audio_second=read("price_per_audio_second"),
        per_million_characters=read("price_per_million_characters"),
    )


def _base(value: Any) -> Decimal | None:
    if value is None:
        return None
    return Decimal(value.base) if hasattr(value, "base") else Decimal(value)


def _tier_starts(model_price: Any) -> list[int]:
    starts: set[int] = set()
    for name in ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok"):
        for tier in getattr(getattr(model_price, name, None), "tiers", None) or ():
            starts.add(int(tier.start))
    return sorted(starts)


def _at_tier(value: Any, start: int) -> Decimal | None:
    if value is None:
        return None
    if not hasattr(value, "tiers"):
        return Decimal(value)
    rate = Decimal(value.base)
    for tier in value.tiers:
        if int(tier.start) <= start:
            rate = Decimal(tier.price)
    return rate


def genai_price(provider_type: str, model: str) -> Price | None:
    """The genai-prices entry for a model, long-context tiers included; None if unknown.

    Besides token rates it carries the units the gateway meters: requests (per thousand
    there), hours of input audio and millions of input characters.
    """
    provider_id = _GENAI_PROVIDER_IDS.get(provider_type, provider_type)
    if provider_id is None:
        return None
    # Imported on first use: a gateway whose models all have prices of their own never
    # loads it (2 MB a worker, its data and HTTP client included).
    from genai_prices import Usage as GenaiUsage
    from genai_prices import calc_price

    try:
        found = calc_price(GenaiUsage(input_tokens=0), model_ref=model, provider_id=provider_id)
    except LookupError:
        return None
    mp = found.model_price
    tiers = tuple(
        (
            start,
            Price(
                input_per_million=_at_tier(mp.input_mtok, start),
                output_per_million=_at_tier(mp.output_mtok, start),
                cache_read_per_million=_at_tier(mp.cache_read_mtok, start),
                cache_write_per_million=_at_tier(mp.cache_write_mtok, start),
            ),
        )
        for start in _tier_starts(mp)
    )
    audio_hours = _base(mp.input_audio_hours) or _base(mp.audio_hours)
    thousand_requests = _base(mp.requests_kcount)
    return Price(
        input_per_million=_base(mp.input_mtok),
        output_per_million=_base(mp.output_mtok),
        cache_read_per_million=_base(mp.cache_read_mtok),
        cache_write_per_million=_base(mp.cache_write_mtok),
        per_request=thousand_requests / 1000 if thousand_requests is not None else None,
        per_audio_second=audio_hours / SECONDS_PER_HOUR if audio_hours is not None else None,
        per_million_characters=_base(mp.input_mchars),
        tiers=tiers,
        context_window=found.model.context_window,
    )


class PriceBook:
    def __init__(
        self,
        configured: Mapping[str, Price],
        *,
        load_rows: Callable[[], Awaitable[Sequence[PriceRow]]] | None,
        default_pricing: bool,
        refresh_seconds: float = 2.0,
    ) -> None:
        self._configured = dict(configured)
        self._load_rows = load_rows
        self._default_pricing = default_pricing
        self._refresh_seconds = refresh_seconds
        self._rows: dict[str, list[PriceRow]] = {}
        self._loaded_at = float("-inf")
        self._lock = anyio.Lock()
        self._genai_cache: dict[tuple[str, str], Price | None] = {}

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    async def _refresh(self) -> None:
        if self._load_rows is None or time.monotonic() - self._loaded_at < self._refresh_seconds:
            return
        async with self._lock:
            if time.monotonic() - self._loaded_at < self._refresh_seconds:
                return
            rows: dict[str, list[PriceRow]] = {}
            for row in await self._load_rows():
                rows.setdefault(row.model_key, []).append(row)
            for versions in rows.values():
                versions.sort(key=lambda row: row.effective_at)
            self._rows = rows
            self._loaded_at = time.monotonic()

    async def priced_selectors(self) -> set[str]:
        """Selectors with a managed price in effect or a configured one (not genai-prices)."""
        await self._refresh()
        now = utcnow()
        managed = {
            key
            for key, versions in self._rows.items()
            if any(row.effective_at <= now for row in versions)
        }
        return managed | set(self._configured)

    async def lookup(self, selector: str, provider_type: str, model: str) -> Price | None:
        await self._refresh()
        now = utcnow()
        for row in reversed(self._rows.get(selector, ())):
            if row.effective_at <= now:
                return row.price
        configured = self._configured.get(selector)
        if configured is not None:
            return configured
        if not self._default_pricing:
            return None
        key = (provider_type, model)
        if key in self._genai_cache:
            return self._genai_cache[key]
        # Off the event loop: the first lookup imports genai-prices and loads its data.
        found = await anyio.to_thread.run_sync(genai_price, provider_type, model)
        if len(self._genai_cache) >= _GENAI_CACHE_SIZE:
            # Clients name models freely: what is remembered stays bounded.
            self._genai_cache.clear()
        self._genai_cache[key] = found
        return found
