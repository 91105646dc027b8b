"""Model selectors to provider instances: ``instance:model``, ``instance/model``, aliases."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from otari_gateway.config import ConfigError
from otari_gateway.errors import InvalidRequest
from otari_gateway.providers.base import Provider


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes: an instance and the bare model name its upstream expects."""

    instance: str
    model: str
    provider: Provider

    @property
    def selector(self) -> str:
        return f"{self.instance}:{self.model}"


class Router:
    """Resolves the ``model`` a client sent; aliases are checked at construction."""

    def __init__(self, providers: Mapping[str, Provider], aliases: Mapping[str, str]) -> None:
        self._providers = dict(providers)
        self._aliases: dict[str, Target] = {}
        for alias, selector in aliases.items():
            try:
                self._aliases[alias] = self._split(selector)
            except InvalidRequest as exc:
                raise ConfigError(f"aliases.{alias}: {exc.message}") from None

    @property
    def instances(self) -> Mapping[str, Provider]:
        return self._providers

    @property
    def aliases(self) -> Mapping[str, Target]:
        return self._aliases

    def resolve(self, model: str) -> Target:
        alias = self._aliases.get(model)
        if alias is not None:
            return alias
        return self._split(model)

    def _split(self, selector: str) -> Target:
        for separator in (":", "/"):
            instance, found, bare = selector.partition(separator)
            if found and instance in self._providers:
                if not bare:
                    break
                return Target(instance, bare, self._providers[instance])
        configured = ", ".join(sorted(self._providers)) or "none configured"
        raise InvalidRequest(
            f"model '{selector}' names no configured provider: use '<provider>:<model>' "
            f"with a provider instance from the config ({configured}) or a configured alias",
            param="model",
            code="model_not_found",
        )
