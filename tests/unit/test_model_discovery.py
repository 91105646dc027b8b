"""The per-instance model-list cache: TTLs, negative caching, single flight."""

from __future__ import annotations

import asyncio

from otari_gateway.errors import UpstreamError
from otari_gateway.pipeline.model_discovery import Discovery, ModelDiscovery
from otari_gateway.providers.base import DiscoveredModel


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lister:
    """A ``ModelLister`` whose answers the test scripts; ``gate`` holds calls open."""

    def __init__(self, *answers: list[str] | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def list_models(self) -> list[DiscoveredModel]:
        self.calls += 1
        await self.gate.wait()
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return [DiscoveredModel(name, 1) for name in answer]


def _discovery(clock: Clock, **listers: Lister) -> ModelDiscovery:
    return ModelDiscovery(listers, ttl=300, failure_ttl=30, timeout=5, clock=clock)


async def test_concurrent_listings_share_one_call() -> None:
    lister = Lister(["a", "b"])
    lister.gate.clear()
    discovery = _discovery(Clock(), one=lister)
    pending = [asyncio.ensure_future(discovery.all()) for _ in range(64)]
    await asyncio.sleep(0)
    lister.gate.set()
    results = await asyncio.gather(*pending)
    assert lister.calls == 1
    expected = Discovery(models=(DiscoveredModel("a", 1), DiscoveredModel("b", 1)))
    assert all(result == {"one": expected} for result in results)


async def test_success_is_kept_for_the_ttl() -> None:
    clock = Clock()
    lister = Lister(["a"], ["a", "b"])
    discovery = _discovery(clock, one=lister)
    await discovery.all()
    clock.now += 299
    assert len((await discovery.all())["one"].models) == 1
    clock.now += 2
    assert len((await discovery.all())["one"].models) == 2
    assert lister.calls == 2


async def test_failure_is_kept_for_the_shorter_ttl_and_others_still_list() -> None:
    clock = Clock()
    broken = Lister(UpstreamError("provider 'down' failed (HTTP 503): busy"), ["back"])
    fine = Lister(["ok"])
    discovery = _discovery(clock, down=broken, up=fine)
    first = await discovery.all()
    assert first["down"] == Discovery(error="provider 'down' failed (HTTP 503): busy")
    assert first["up"].models == (DiscoveredModel("ok", 1),)
    clock.now += 29
    assert (await discovery.all())["down"].error is not None
    assert broken.calls == 1
    clock.now += 2
    assert (await discovery.all())["down"].models == (DiscoveredModel("back", 1),)
    assert (broken.calls, fine.calls) == (2, 1)


async def test_a_crashing_lister_becomes_a_failure_not_an_exception() -> None:
    discovery = _discovery(Clock(), odd=Lister(ValueError("bad shape")))
    found = await discovery.all()
    assert found["odd"].models == ()
    assert found["odd"].error == "listing the models of provider 'odd' failed"


async def test_a_cancelled_listing_does_not_cancel_the_shared_call() -> None:
    lister = Lister(["a"])
    lister.gate.clear()
    discovery = _discovery(Clock(), one=lister)
    leaving = asyncio.ensure_future(discovery.all())
    staying = asyncio.ensure_future(discovery.all())
    await asyncio.sleep(0)
    leaving.cancel()
    lister.gate.set()
    assert (await staying)["one"].models == (DiscoveredModel("a", 1),)
    assert lister.calls == 1
