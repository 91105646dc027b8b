"""Upstream model lists, cached per provider instance.

Only ``GET /v1/models`` asks for them, never a generation request. Each instance's list is
kept for a TTL; a failed listing is remembered for a shorter one, so a down upstream is
asked again soon but not on every listing. Concurrent listings share one upstream call per
instance (single flight), and every call is bounded by the discovery timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from otari_gateway.errors import GatewayError
from otari_gateway.providers.base import DiscoveredModel, ModelLister

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Discovery:
    """One instance's last listing: its models, or why there are none."""

    models: tuple[DiscoveredModel, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Cached:
    discovery: Discovery
    expires_at: float


class ModelDiscovery:
    def __init__(
        self,
        listers: Mapping[str, ModelLister],
        *,
        ttl: float,
        failure_ttl: float,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._listers = dict(listers)
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._timeout = timeout
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._inflight: dict[str, asyncio.Task[Discovery]] = {}

    @property
    def instances(self) -> tuple[str, ...]:
        return tuple(self._listers)

    async def all(self) -> dict[str, Discovery]:
        """Every discovering instance's listing, fetching the missing or expired ones."""
        found = await asyncio.gather(*(self._get(instance) for instance in self._listers))
        return dict(zip(self._listers, found, strict=True))

    async def _get(self, instance: str) -> Discovery:
        cached = self._cache.get(instance)
        if cached is not None and cached.expires_at > self._clock():
            return cached.discovery
        task = self._inflight.get(instance)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(instance))
            self._inflight[instance] = task
            task.add_done_callback(lambda _: self._inflight.pop(instance, None))
        # Shielded: a listing client that hangs up must not cancel the shared call.
        return await asyncio.shield(task)

    async def _fetch(self, instance: str) -> Discovery:
        try:
            async with asyncio.timeout(self._timeout):
                models = await self._listers[instance].list_models()
        except GatewayError as exc:
            discovery = Discovery(error=exc.message)
        except TimeoutError:
            discovery = Discovery(
                error=f"provider '{instance}' did not list its models within "
                f"{self._timeout:g} seconds"
            )
        except Exception:
            log.exception("models.discovery_crashed", instance=instance)
            discovery = Discovery(error=f"listing the models of provider '{instance}' failed")
        else:
            discovery = Discovery(models=tuple(models))
        if discovery.error is None:
            ttl = self._ttl
            log.info("models.discovered", instance=instance, count=len(discovery.models))
        else:
            ttl = self._failure_ttl
            log.warning("models.discovery_failed", instance=instance, error=discovery.error)
        self._cache[instance] = _Cached(discovery, self._clock() + ttl)
        return discovery

    async def aclose(self) -> None:
        """Cancel listings still in flight (shutdown)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
