"""Everything on the request path that has a lifecycle, built and started in one place.

The database, the usage writer, provider connection pools and the in-process caches. It
also receives the control plane's change notices (``ChangeListener``) and drops the caches
they affect, so a management write applies from the next request on this process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from otari_gateway.billing.ledger import Ledger
from otari_gateway.billing.pricing import PriceBook, PriceRow, price_from_fields
from otari_gateway.config import GatewayConfig
from otari_gateway.control.pricing import load_price_rows
from otari_gateway.limits import make_limiter
from otari_gateway.pipeline.admission import Admission, Authenticator
from otari_gateway.pipeline.bootstrap import master_key_digest
from otari_gateway.pipeline.model_catalog import ModelCatalog
from otari_gateway.pipeline.model_discovery import ModelDiscovery
from otari_gateway.pipeline.routing import Router
from otari_gateway.pipeline.run import Pipeline
from otari_gateway.pipeline.settle import Settler
from otari_gateway.pipeline.stored_responses import StoredResponses
from otari_gateway.pipeline.tokenizer import Tokenizers
from otari_gateway.pipeline.upstream_objects import ObjectAccess
from otari_gateway.providers.base import ModelLister
from otari_gateway.providers.registry import build_providers, provider_type_of
from otari_gateway.store.database import Database
from otari_gateway.store.usage_writer import UsageWriter

if TYPE_CHECKING:
    from otari_gateway.pipeline.cache_bus import CacheBus
    from otari_gateway.telemetry.metrics import Metrics


class Runtime:
    def __init__(
        self, config: GatewayConfig, environ: Mapping[str, str], metrics: Metrics | None = None
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.db = Database(config.database_url)
        self.ledger = Ledger(self.db, metrics, lease_ttl_seconds=config.budget_lease_ttl_seconds)
        self.writer = UsageWriter(self.db, on_written=self.ledger.charged)
        self.providers = build_providers(config, environ)
        self.router = Router(self.providers, config.aliases)
        self.prices = PriceBook(
            {selector: price_from_fields(fields) for selector, fields in config.pricing.items()},
            load_rows=self._price_rows,
            default_pricing=config.default_pricing,
        )
        self.authenticator = Authenticator(self.db)
        self.limiter = make_limiter(config.redis_url)
        self.tokenizers = Tokenizers(enabled=config.exact_token_counts)
        self.admission = Admission(
            config,
            self.db,
            self.prices,
            self.ledger,
            self.tokenizers,
            {name: provider_type_of(name, p) for name, p in config.providers.items()},
            self.limiter,
            metrics,
        )
        self._bus = _cache_bus(config.redis_url, self._drop) if config.redis_url else None
        self._bus_scope: anyio.CancelScope | None = None
        self._lease_scope: anyio.CancelScope | None = None
        self._leases_stopped: anyio.Event | None = None
        self.responses = StoredResponses(
            self.db, self.router, ObjectAccess(self.router, self.admission)
        )
        self.pipeline = Pipeline(
            self.router,
            self.admission,
            Settler(self.writer, self.admission, metrics),
            self.responses,
        )
        self.discovery = ModelDiscovery(
            {
                name: provider
                for name, provider in self.providers.items()
                if isinstance(provider, ModelLister) and _discovers(config, name)
            },
            ttl=config.model_discovery_ttl_seconds,
            failure_ttl=config.model_discovery_failure_ttl_seconds,
            timeout=config.model_discovery_timeout_seconds,
        )
        self.models = ModelCatalog(config, self.router, self.prices, self.discovery)

    async def _price_rows(self) -> list[PriceRow]:
        return await load_price_rows(self.db)

    async def start(self, group: anyio.abc.TaskGroup) -> None:
        self.authenticator.use_master_digest(
            await master_key_digest(self.db, self.config.master_key)
        )
        for provider in self.providers.values():
            await provider.start()
        await self.tokenizers.preload(
            model for provider in self.config.providers.values() for model in provider.models
        )
        group.start_soon(self.writer.run)
        # Made here, inside the event loop; cancelling it before the task enters it is fine.
        self._lease_scope = anyio.CancelScope()
        self._leases_stopped = anyio.Event()
        group.start_soon(self._expire_leases, self._lease_scope, self._leases_stopped)
        if self._bus is not None:
            group.start_soon(self._run_bus, self._bus)

    async def _expire_leases(self, scope: anyio.CancelScope, stopped: anyio.Event) -> None:
        try:
            with scope:
                await self.ledger.expire_leases()
        finally:
            stopped.set()

    async def _run_bus(self, bus: CacheBus) -> None:
        with anyio.CancelScope() as scope:
            self._bus_scope = scope
            await bus.run()

    async def stop(self) -> None:
        """Graceful shutdown: every queued usage row is written before the pools close."""
        if self._bus_scope is not None:
            self._bus_scope.cancel()
        if self._lease_scope is not None:
            self._lease_scope.cancel()
        if self._leases_stopped is not None:
            # A return in progress finishes (it is shielded) before the pool closes.
            await self._leases_stopped.wait()
        try:
            await self.pipeline.drain()
            await self.writer.aclose()
            await self.ledger.return_leases(idle_only=False)
        finally:
            if self._bus is not None:
                await self._bus.aclose()
            await self.discovery.aclose()
            for provider in self.providers.values():
                await provider.aclose()
            await self.limiter.aclose()
            await self.db.aclose()

    def _drop(self, topic: str) -> None:
        """Drop this process's caches for a topic (from a local write or the bus)."""
        if topic == "keys":
            self.authenticator.forget()
            self.ledger.invalidate_leases()
        elif topic == "users":
            self.admission.forget()
            self.ledger.invalidate_leases()
        elif topic == "pricing":
            self.prices.invalidate()

    def _changed(self, topic: str) -> None:
        self._drop(topic)
        if self._bus is not None:
            self._bus.publish(topic)

    def keys_changed(self) -> None:
        self._changed("keys")

    def users_changed(self) -> None:
        self._changed("users")

    def pricing_changed(self) -> None:
        self._changed("pricing")


def _discovers(config: GatewayConfig, instance: str) -> bool:
    own = config.providers[instance].discover_models
    return config.discover_models if own is None else own


def _cache_bus(redis_url: str, on_change: Callable[[str], None]) -> CacheBus:
    # Imported only when Redis is configured: redis-py costs each worker ~5 MB of memory.
    from otari_gateway.pipeline.cache_bus import CacheBus

    return CacheBus(redis_url, on_change)
