"""Azure OpenAI: OpenAI's API on an Azure resource, relayed byte for byte.

Azure serves the same request and response bodies as OpenAI (plus content-filter fields the
relay passes along) at two kinds of address under the resource endpoint
(``https://RESOURCE.openai.azure.com``):

- the v1 API, ``/openai/v1/chat/completions``, with the deployment name as ``model``;
- the classic deployment route,
  ``/openai/deployments/{deployment}/chat/completions?api-version=2024-10-21``, which the
  instance uses when its block names a dated ``api_version``. The deployment is the
  instance's ``deployment`` or, unset, the request's model, since Azure users name their
  deployments after what they route to.

Both take the resource key in an ``api-key`` header.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from otari_gateway.config import ConfigError, ProviderConfig
from otari_gateway.providers.base import Capabilities, Operation, Wire
from otari_gateway.providers.http import HttpUpstream
from otari_gateway.providers.openai_compat import read_openai_error

CAPABILITIES = Capabilities(
    wire=Wire.OPENAI,
    operations=frozenset({Operation.CHAT, Operation.EMBEDDINGS}),
    openai_platform=True,
)

_PATHS = {Operation.CHAT: "/chat/completions", Operation.EMBEDDINGS: "/embeddings"}
V1 = "v1"
# Azure's dated data-plane versions: 2024-10-21, 2025-04-01-preview …
_DATED_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
# What users paste as the endpoint besides the resource root: the API prefixes themselves.
_API_SUFFIX = re.compile(r"/openai(/v1)?/*$")


class AzureOpenAIProvider(HttpUpstream):
    """An Azure OpenAI resource, on the v1 API or on its deployment routes."""

    capabilities = CAPABILITIES
    settings = frozenset({"api_version", "deployment"})

    def __init__(self, instance: str, config: ProviderConfig, api_key: str | None) -> None:
        version, deployment = _settings(instance, config.model_extra or {})
        endpoint = _API_SUFFIX.sub("", str(config.client_args.get("base_url") or config.api_base))
        self._version_query = "" if version == V1 else "?" + urlencode({"api-version": version})
        self._deployment = deployment
        self._deployments = endpoint.rstrip("/") + "/openai/deployments/"
        super().__init__(
            instance,
            config,
            base_url=endpoint.rstrip("/") + "/openai/v1",
            auth_headers={"api-key": api_key} if api_key else {},
            secret=api_key,
            paths=_PATHS,
            read_error=read_openai_error,
        )

    def _url(self, operation: Operation, model: str) -> str:
        if not self._version_query:
            return super()._url(operation, model)
        deployment = quote(self._deployment or model, safe="")
        return self._deployments + deployment + _PATHS[operation] + self._version_query


def _settings(instance: str, extra: Mapping[str, Any]) -> tuple[str, str | None]:
    """The instance's ``api_version`` and ``deployment``, checked."""
    version = str(extra.get("api_version") or V1)
    deployment = extra.get("deployment")
    if version != V1 and not _DATED_VERSION.fullmatch(version):
        raise ConfigError(
            f"providers.{instance}.api_version: '{version}' is neither 'v1' nor a dated Azure "
            "API version such as 2024-10-21"
        )
    if deployment is not None and (not isinstance(deployment, str) or not deployment):
        raise ConfigError(f"providers.{instance}.deployment: must be a deployment name")
    if deployment and version == V1:
        # On the v1 API the deployment travels as the request's model, which the client names.
        raise ConfigError(
            f"providers.{instance}.deployment: only used with a dated api_version; on the v1 "
            f"API route to '{instance}:{deployment}' (or an alias) instead"
        )
    return version, deployment
