"""The closed table of provider types, and building the configured instances from it.

A type names its adapter, its default base URL and the environment variable its own SDK
reads for a key, so an instance that names no ``api_key`` still works from the usual
``OPENAI_API_KEY``-style variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from otari_gateway.config import ConfigError, GatewayConfig, ProviderConfig
from otari_gateway.providers.anthropic import AnthropicProvider
from otari_gateway.providers.base import Provider
from otari_gateway.providers.openai_compat import OpenAICompatProvider


@dataclass(frozen=True, slots=True)
class ProviderType:
    adapter: type[OpenAICompatProvider] | type[AnthropicProvider]
    default_api_base: str | None
    key_env: str | None


def _openai(base: str | None, key_env: str | None) -> ProviderType:
    return ProviderType(OpenAICompatProvider, base, key_env)


PROVIDER_TYPES: Mapping[str, ProviderType] = {
    "openai": _openai("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "anthropic": ProviderType(AnthropicProvider, "https://api.anthropic.com", "ANTHROPIC_API_KEY"),
    "cerebras": _openai("https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
    "deepinfra": _openai("https://api.deepinfra.com/v1/openai", "DEEPINFRA_API_KEY"),
    "deepseek": _openai("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    "fireworks": _openai("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
    "groq": _openai("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "llamacpp": _openai("http://127.0.0.1:8080/v1", None),
    "lmstudio": _openai("http://127.0.0.1:1234/v1", None),
    "mistral": _openai("https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "moonshot": _openai("https://api.moonshot.ai/v1", "MOONSHOT_API_KEY"),
    "nebius": _openai("https://api.studio.nebius.ai/v1", "NEBIUS_API_KEY"),
    "ollama": _openai("http://127.0.0.1:11434/v1", None),
    "openrouter": _openai("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "perplexity": _openai("https://api.perplexity.ai", "PERPLEXITY_API_KEY"),
    "sambanova": _openai("https://api.sambanova.ai/v1", "SAMBANOVA_API_KEY"),
    "together": _openai("https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    "vllm": _openai(None, None),
    "xai": _openai("https://api.x.ai/v1", "XAI_API_KEY"),
}


# OpenAI-compatible types whose servers implement ``/responses``; every other one is
# served through Chat Completions unless its instance sets ``native_responses: true``.
NATIVE_RESPONSES_TYPES = frozenset({"openai", "groq", "openrouter", "xai"})


def provider_type_of(instance: str, config: ProviderConfig) -> str:
    return (config.provider_type or instance).lower()


def build_provider(instance: str, config: ProviderConfig, environ: Mapping[str, str]) -> Provider:
    """One adapter for one configured instance; a config mistake raises ``ConfigError``."""
    type_name = provider_type_of(instance, config)
    kind = PROVIDER_TYPES.get(type_name)
    if kind is None:
        known = ", ".join(sorted(PROVIDER_TYPES))
        raise ConfigError(
            f"providers.{instance}: unknown provider_type '{type_name}' (known: {known}); "
            "any OpenAI-compatible server works with provider_type: openai and its api_base"
        )
    api_base = config.api_base or kind.default_api_base
    if api_base is None and "base_url" not in config.client_args:
        raise ConfigError(f"providers.{instance}: api_base is required for type '{type_name}'")
    api_key = config.api_key or (environ.get(kind.key_env) if kind.key_env else None)
    native = config.native_responses
    if native is None:
        native = type_name in NATIVE_RESPONSES_TYPES
    resolved = config.model_copy(update={"api_base": api_base, "native_responses": native})
    return kind.adapter(instance, resolved, api_key)


def build_providers(config: GatewayConfig, environ: Mapping[str, str]) -> dict[str, Provider]:
    return {
        instance: build_provider(instance, provider, environ)
        for instance, provider in config.providers.items()
    }
