"""The closed table of provider types, and building the configured instances from it.

A type names how it is reached (a byte-relaying adapter, or an any-llm provider), its
default base URL and the environment variable its own SDK reads for a key, so an instance
that names no ``api_key`` still works from the usual ``OPENAI_API_KEY``-style variable (and,
for Azure OpenAI, one that names no ``api_base`` from ``AZURE_OPENAI_ENDPOINT``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from otari_gateway.config import ConfigError, GatewayConfig, ProviderConfig
from otari_gateway.providers.anthropic import AnthropicProvider
from otari_gateway.providers.anyllm_spec import SdkSpec
from otari_gateway.providers.azure_openai import AzureOpenAIProvider
from otari_gateway.providers.base import Capabilities, Provider
from otari_gateway.providers.openai_compat import OpenAICompatProvider


@dataclass(frozen=True, slots=True)
class ProviderType:
    default_api_base: str | None
    key_env: str | None
    adapter: (
        type[OpenAICompatProvider] | type[AnthropicProvider] | type[AzureOpenAIProvider] | None
    ) = None
    sdk: SdkSpec | None = None
    """Set for types reached through any-llm instead of a byte-relaying adapter."""
    base_env: str | None = None
    """The variable the provider's own SDK reads for its endpoint when none is configured."""

    @property
    def capabilities(self) -> Capabilities:
        if self.sdk is not None:
            return self.sdk.capabilities()
        assert self.adapter is not None
        return self.adapter.capabilities

    @property
    def reached_by(self) -> str:
        return "any-llm" if self.sdk is not None else "passthrough"


def _openai(base: str | None, key_env: str | None) -> ProviderType:
    return ProviderType(base, key_env, adapter=OpenAICompatProvider)


def _sdk(spec: SdkSpec, key_env: str | None, base: str | None = None) -> ProviderType:
    return ProviderType(base, key_env, sdk=spec)


PROVIDER_TYPES: Mapping[str, ProviderType] = {
    "openai": _openai("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "anthropic": ProviderType(
        "https://api.anthropic.com", "ANTHROPIC_API_KEY", adapter=AnthropicProvider
    ),
    "atlascloud": _openai("https://api.atlascloud.ai/v1", "ATLASCLOUD_API_KEY"),
    "azureopenai": ProviderType(
        None,
        "AZURE_OPENAI_API_KEY",
        adapter=AzureOpenAIProvider,
        base_env="AZURE_OPENAI_ENDPOINT",
    ),
    "cerebras": _openai("https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
    "dashscope": _openai("https://dashscope.aliyuncs.com/compatible-mode/v1", "DASHSCOPE_API_KEY"),
    "databricks": _openai(None, "DATABRICKS_TOKEN"),
    "deepinfra": _openai("https://api.deepinfra.com/v1/openai", "DEEPINFRA_API_KEY"),
    "deepseek": _openai("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    "edenai": _openai("https://api.edenai.run/v3", "EDENAI_API_KEY"),
    "fireworks": _openai("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
    "github": _openai("https://models.github.ai/inference", "GITHUB_TOKEN"),
    "gmi": _openai("https://api.gmi-serving.com/v1", "GMI_API_KEY"),
    "groq": _openai("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "inception": _openai("https://api.inceptionlabs.ai/v1", "INCEPTION_API_KEY"),
    "kenari": _openai("https://kenari.id/v1", "KENARI_API_KEY"),
    "llama": _openai("https://api.llama.com/compat/v1", "LLAMA_API_KEY"),
    "llamacpp": _openai("http://127.0.0.1:8080/v1", None),
    "llamafile": _openai("http://127.0.0.1:8080/v1", None),
    "lmstudio": _openai("http://127.0.0.1:1234/v1", None),
    "meta": _openai("https://api.meta.ai/v1", "MODEL_API_KEY"),
    "minimax": _openai("https://api.minimax.io/v1", "MINIMAX_API_KEY"),
    "moonshot": _openai("https://api.moonshot.ai/v1", "MOONSHOT_API_KEY"),
    "nebius": _openai("https://api.studio.nebius.ai/v1", "NEBIUS_API_KEY"),
    "neosantara": _openai("https://api.neosantara.xyz/v1", "NEOSANTARA_API_KEY"),
    "openrouter": _openai("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "ovhcloud": _openai("https://oai.endpoints.kepler.ai.cloud.ovh.net/v1", "OVHCLOUD_API_KEY"),
    "perplexity": _openai("https://api.perplexity.ai", "PERPLEXITY_API_KEY"),
    "portkey": _openai("https://api.portkey.ai/v1", "PORTKEY_API_KEY"),
    "qiniu": _openai("https://api.qnaigc.com/v1", "QINIU_API_KEY"),
    "requesty": _openai("https://router.requesty.ai/v1", "REQUESTY_API_KEY"),
    "sambanova": _openai("https://api.sambanova.ai/v1", "SAMBANOVA_API_KEY"),
    "telnyx": _openai("https://api.telnyx.com/v2/ai", "TELNYX_API_KEY"),
    "together": _openai("https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    "vllm": _openai(None, None),
    "xai": _openai("https://api.x.ai/v1", "XAI_API_KEY"),
    "zai": _openai("https://api.z.ai/api/paas/v4", "ZAI_API_KEY"),
    # Reached through any-llm: their APIs are their own. The SDK's defaults apply where the
    # default base is None.
    "azure": _sdk(
        SdkSpec(
            "azure",
            "azure",
            embeddings=True,
            extras_arg="model_extras",
            retries_arg="retry_total",
        ),
        "AZURE_API_KEY",
    ),
    "azureanthropic": _sdk(SdkSpec("azureanthropic", None), "AZURE_ANTHROPIC_API_KEY"),
    "bedrock": _sdk(
        SdkSpec("bedrock", "bedrock", embeddings=True, boto=True),
        "AWS_BEARER_TOKEN_BEDROCK",
    ),
    "cohere": _sdk(
        SdkSpec("cohere", "cohere", embeddings=True, rerank=True, api_base_arg="base_url"),
        "COHERE_API_KEY",
    ),
    "gemini": _sdk(SdkSpec("gemini", "gemini", embeddings=True), "GEMINI_API_KEY"),
    "huggingface": _sdk(SdkSpec("huggingface", "huggingface"), "HF_TOKEN"),
    "liner": _sdk(SdkSpec("liner", None), "LINER_API_KEY"),
    "mistral": _sdk(SdkSpec("mistral", "mistral", embeddings=True), "MISTRAL_API_KEY"),
    "ollama": _sdk(SdkSpec("ollama", "ollama", embeddings=True), None, "http://127.0.0.1:11434"),
    "sagemaker": _sdk(
        SdkSpec("sagemaker", "sagemaker", embeddings=True, boto=True, streams=False), None
    ),
    # Both authenticate with Google credentials (GOOGLE_APPLICATION_CREDENTIALS …), not a key.
    "vertexai": _sdk(
        SdkSpec("vertexai", "vertexai", embeddings=True, api_base_arg="http_options.base_url"),
        None,
    ),
    "vertexaianthropic": _sdk(
        SdkSpec("vertexaianthropic", "vertexaianthropic", api_base_arg="base_url"), None
    ),
    "voyage": _sdk(
        SdkSpec(
            "voyage", "voyage", chat=False, embeddings=True, rerank=True, api_base_arg="base_url"
        ),
        "VOYAGE_API_KEY",
    ),
    "watsonx": _sdk(SdkSpec("watsonx", "watsonx", blocking=True), "WATSONX_API_KEY"),
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
    api_base = (
        config.api_base
        or (environ.get(kind.base_env) if kind.base_env else None)
        or kind.default_api_base
    )
    api_key = config.api_key or (environ.get(kind.key_env) if kind.key_env else None)
    native = config.native_responses
    if native is None:
        native = type_name in NATIVE_RESPONSES_TYPES
    # The type is resolved too: an adapter serving several types behaves per type.
    resolved = config.model_copy(
        update={"api_base": api_base, "native_responses": native, "provider_type": type_name}
    )
    extra_keys = dict(config.model_extra or {})
    if kind.sdk is not None:
        # Imported only when such an instance is configured: any-llm takes seconds to load.
        from otari_gateway.providers.anyllm import AnyLLMProvider

        # Provider-specific keys (Vertex project/location, Bedrock region, ...) go to the SDK.
        sdk_args = {**config.client_args, **extra_keys}
        return AnyLLMProvider(instance, type_name, kind.sdk, resolved, api_key, sdk_args)
    assert kind.adapter is not None
    unknown = sorted(set(extra_keys) - kind.adapter.settings)
    if unknown:
        where = ", ".join(f"providers.{instance}.{key}" for key in unknown)
        raise ConfigError(f"{where}: unknown key for provider_type '{type_name}'")
    if api_base is None and "base_url" not in config.client_args:
        raise ConfigError(f"providers.{instance}: api_base is required for type '{type_name}'")
    return kind.adapter(instance, resolved, api_key)


def build_providers(config: GatewayConfig, environ: Mapping[str, str]) -> dict[str, Provider]:
    return {
        instance: build_provider(instance, provider, environ)
        for instance, provider in config.providers.items()
    }
