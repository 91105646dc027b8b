"""What ``GET /v1/models`` lists: declared, discovered and priced models, then aliases.

Ids are selectors a client can send back as ``model`` (``instance:model``, or an alias).
Declared models (``providers.<instance>.models``) come first, then what each discovering
instance's upstream lists, then models priced through ``/v1/pricing`` or the config whose
instance is configured; the first occurrence of an id wins.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from otari_gateway.billing.cost import Price
from otari_gateway.billing.pricing import PriceBook
from otari_gateway.config import GatewayConfig
from otari_gateway.pipeline.model_discovery import Discovery, ModelDiscovery
from otari_gateway.pipeline.routing import Router
from otari_gateway.providers.registry import provider_type_of


@dataclass(frozen=True, slots=True)
class ListedModel:
    id: str
    created: int
    owned_by: str
    # The model's token prices where the gateway knows them (what a request will be billed).
    price: Price | None = None


@dataclass(frozen=True, slots=True)
class Listing:
    models: tuple[ListedModel, ...]
    failures: Mapping[str, str]
    """Instance → why its upstream could not be listed (its other entries still show)."""


class ModelCatalog:
    def __init__(
        self, config: GatewayConfig, router: Router, prices: PriceBook, discovery: ModelDiscovery
    ) -> None:
        self._config = config
        self._router = router
        self._prices = prices
        self._discovery = discovery

    async def listing(self, created: int) -> Listing:
        """Every listed model; ``created`` stands in where the upstream gives no date."""
        discovered = await self._discovery.all()
        priced = sorted(await self._prices.priced_selectors())
        seen: set[str] = set()
        models = []
        for item in self._candidates(created, discovered, priced):
            if item.id not in seen:
                seen.add(item.id)
                models.append(replace(item, price=await self._price_of(item)))
        failures = {name: d.error for name, d in discovered.items() if d.error is not None}
        return Listing(tuple(models), failures)

    async def find(self, model_id: str, created: int) -> ListedModel | None:
        """The listed model ``model_id`` names, in either selector form (``openai:gpt-4o``
        or ``openai/gpt-4o``, as requests may write it)."""
        listing = await self.listing(created)
        wanted = {model_id}
        instance, slash, bare = model_id.partition("/")
        if slash and instance in self._config.providers:
            wanted.add(f"{instance}:{bare}")
        return next((item for item in listing.models if item.id in wanted), None)

    async def _price_of(self, item: ListedModel) -> Price | None:
        alias = self._router.aliases.get(item.id)
        instance, _, model = (alias.selector if alias else item.id).partition(":")
        provider = self._config.providers.get(instance)
        if provider is None or not model:
            return None
        return await self._prices.lookup(
            f"{instance}:{model}", provider_type_of(instance, provider), model
        )

    def _candidates(
        self, created: int, discovered: Mapping[str, Discovery], priced: list[str]
    ) -> Iterator[ListedModel]:
        providers = self._config.providers
        for instance, provider in providers.items():
            for model in provider.models:
                yield ListedModel(f"{instance}:{model}", created, instance)
        for instance, discovery in discovered.items():
            for found in discovery.models:
                yield ListedModel(f"{instance}:{found.id}", found.created or created, instance)
        for selector in priced:
            instance, _, model = selector.partition(":")
            if instance in providers and model:
                yield ListedModel(selector, created, instance)
        for alias, target in self._router.aliases.items():
            yield ListedModel(alias, created, target.instance)
