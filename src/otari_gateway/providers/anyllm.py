"""Providers reached through the any-llm SDK: upstreams that speak neither OpenAI nor Anthropic.

Gemini, Vertex AI, Bedrock, Azure, Mistral, Cohere, Ollama … each have their own API; any-llm
translates an OpenAI chat-completions call to each and answers with OpenAI-shaped objects.
The adapter takes the pipeline's OpenAI body, calls any-llm's async API and hands back
OpenAI JSON or SSE bytes, so to the pipeline such an instance simply speaks ``Wire.OPENAI``.

One any-llm provider object (holding one SDK client and its connection pool) is made per
instance at start-up and reused by every request. A missing optional SDK does not stop
start-up: requests to that instance get a 400 naming the extra to install.
"""

from __future__ import annotations

import base64
import struct
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
import structlog
from any_llm import AnyLLM
from any_llm.types.completion import ChatCompletionChunk
from any_llm.utils.aio import aclose_quietly

from otari_gateway.config import ProviderConfig
from otari_gateway.errors import GatewayError, InvalidRequest
from otari_gateway.providers.anyllm_errors import map_sdk_error, missing_extra, timed_out
from otari_gateway.providers.anyllm_spec import SdkSpec
from otari_gateway.providers.anyllm_stream import (
    on_own_loop,
    openai_json,
    openai_sse,
    replayed_sse,
    threaded_chunks,
)
from otari_gateway.providers.base import Operation, UpstreamReply

log = structlog.get_logger(__name__)


class AnyLLMProvider:
    """One configured instance whose upstream is reached through an any-llm provider."""

    def __init__(
        self,
        instance: str,
        type_name: str,
        spec: SdkSpec,
        config: ProviderConfig,
        api_key: str | None,
        sdk_args: Mapping[str, Any],
    ) -> None:
        self.instance = instance
        self.capabilities = spec.capabilities()
        self._type_name = type_name
        self._spec = spec
        self._api_key = api_key
        self._api_base = config.api_base
        self._sdk_args = dict(sdk_args)
        self._seconds = config.timeout
        self._connect_seconds = config.connect_timeout
        self._secrets = (api_key or "", *_secret_values(self._sdk_args))
        self._client: AnyLLM | None = None
        self._unavailable: GatewayError | None = None

    async def start(self) -> None:
        if self._client is not None:
            return
        try:
            self._client = self._create()
        except ImportError:
            extra = self._spec.extra or self._spec.name
            self._unavailable = missing_extra(self.instance, self._type_name, extra)
            log.warning("provider.sdk_missing", instance=self.instance, extra=extra)
        except Exception as exc:  # noqa: BLE001 -- a broken instance must not stop start-up
            self._unavailable = map_sdk_error(exc, self.instance, self._secrets)
            log.warning(
                "provider.sdk_unusable", instance=self.instance, error=self._unavailable.message
            )

    def _create(self) -> AnyLLM:
        args = dict(self._sdk_args)
        api_base = self._api_base
        if self._spec.api_base_arg and api_base:
            _set_default(args, self._spec.api_base_arg, api_base)
            api_base = None
        if self._spec.boto:
            args["config"] = self._boto_config(args.get("config"))
        # The gateway answers failures itself (with Retry-After); an SDK's silent retries
        # would multiply latency and hide the upstream's status.
        if self._spec.retries_arg:
            args.setdefault(self._spec.retries_arg, 0)
        elif AnyLLM.get_provider_class(self._spec.name).MAX_RETRIES_SUPPORT != "unsupported":
            args.setdefault("max_retries", 0)
        return AnyLLM.create(
            self._spec.name,
            api_key=self._api_key,
            api_base=api_base,
            unified_exceptions=True,
            **args,
        )

    def _boto_config(self, overrides: Any) -> Any:
        """boto3's defaults (60 s reads, up to 4 retries) replaced by the instance's settings."""
        # Imported here: botocore comes only with the optional extra (ImportError → 400).
        from botocore.config import Config

        settings: dict[str, Any] = {
            "read_timeout": self._seconds,
            "connect_timeout": self._connect_seconds,
            "retries": {"total_max_attempts": 1},
        }
        if isinstance(overrides, Mapping):
            settings.update(overrides)
        return Config(**settings)

    async def aclose(self) -> None:
        # any-llm exposes no close; the SDK clients release their pools when collected.
        self._client = None

    def _ready(self) -> AnyLLM:
        if self._unavailable is not None:
            raise self._unavailable
        if self._client is None:
            raise InvalidRequest(f"provider '{self.instance}' is not started")
        return self._client

    async def send(
        self,
        operation: Operation,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        model: str,
    ) -> UpstreamReply:
        client = self._ready()
        params = self._params(body)
        if operation is Operation.EMBEDDINGS:
            model = params.pop("model", None)
            inputs = params.pop("input", None)
            # OpenAI's clients ask for base64 by default, which SDKs take differently (any-llm
            # turns Azure's base64 vectors into empty ones): the SDK is asked for floats, and
            # they are encoded here as OpenAI does.
            as_base64 = params.pop("encoding_format", None) == "base64"
            result: Any = await self._call(client.aembedding(model, inputs, **params))
            reply = openai_json(result)
            if as_base64:
                _encode_vectors(reply)
        elif operation is Operation.RERANK:
            reply = await self._rerank(client, params)
        else:
            params["stream"] = False
            if self._spec.blocking:
                result = await self._call(on_own_loop(lambda: client.acompletion(**params)))
            else:
                result = await self._call(client.acompletion(**params))
            reply = openai_json(result)
        return UpstreamReply(200, orjson.dumps(reply), "application/json")

    @asynccontextmanager
    async def stream(
        self,
        operation: Operation,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        model: str,
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        client = self._ready()
        params = self._params(body)
        options = params.get("stream_options") or {}
        include_usage = bool(options.get("include_usage"))
        if not self._spec.streams:
            params["stream"] = False
            params.pop("stream_options", None)
            answer = openai_json(await self._call(client.acompletion(**params)))
            yield replayed_sse(answer, include_usage=include_usage)
            return
        params["stream"] = True
        if self._spec.extras_arg and options:
            # any-llm drops them for this SDK, and the upstream then reports no usage.
            _set_default(params, f"{self._spec.extras_arg}.stream_options", options)
        if self._spec.boto or self._spec.blocking:
            chunks: AsyncIterator[ChatCompletionChunk] = threaded_chunks(
                lambda: client.acompletion(**params)
            )
        else:
            chunks = await self._call(client.acompletion(**params))
        try:
            # Many SDKs send the request only when the first chunk is asked for; reading it
            # here keeps a refusal (401, 429 …) a real status code instead of a stream error.
            first = await self._next(chunks)
            yield openai_sse(first, chunks, include_usage=include_usage, next_chunk=self._next)
        finally:
            await aclose_quietly(chunks)

    async def _rerank(self, client: AnyLLM, params: dict[str, Any]) -> dict[str, Any]:
        """API.md's rerank answer from any-llm's: results best first, usage as reported."""
        model = params.pop("model", None)
        query = params.pop("query", None)
        documents = [_document_text(item) for item in params.pop("documents", None) or ()]
        result = await self._call(client.arerank(model, query, documents, **params))
        reply = openai_json(result)
        if not reply.get("id"):
            reply["id"] = f"rerank-{uuid.uuid4().hex}"
        return reply

    def _params(self, body: bytes) -> dict[str, Any]:
        """any-llm's keyword arguments for an OpenAI chat or embeddings body."""
        params = orjson.loads(body)
        if not isinstance(params, dict):
            raise InvalidRequest("the request body must be a JSON object")
        for name in _OPENAI_ONLY_FIELDS:
            params.pop(name, None)
        # Current OpenAI clients send only the newer name; any-llm maps ``max_tokens`` for
        # every provider, while some SDKs take no ``max_completion_tokens``.
        if "max_completion_tokens" in params:
            params.setdefault("max_tokens", params.pop("max_completion_tokens"))
        return params

    async def _call(self, call: Coroutine[Any, Any, Any]) -> Any:
        try:
            with anyio.fail_after(self._seconds):
                return await call
        except TimeoutError:
            raise timed_out(self.instance, self._seconds) from None
        except Exception as exc:  # noqa: BLE001 -- every SDK failure is mapped here
            raise map_sdk_error(exc, self.instance, self._secrets) from None

    async def _next(self, chunks: AsyncIterator[ChatCompletionChunk]) -> ChatCompletionChunk | None:
        """The next chunk within the per-read timeout, or None at the end."""
        try:
            with anyio.fail_after(self._seconds):
                return await anext(chunks)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise timed_out(self.instance, self._seconds) from None
        except Exception as exc:  # noqa: BLE001 -- every SDK failure is mapped here
            raise map_sdk_error(exc, self.instance, self._secrets) from None


# OpenAI platform bookkeeping with no counterpart elsewhere; SDKs of other APIs reject them
# as unknown arguments. ``user`` is also how a master-key request names whom to bill.
_OPENAI_ONLY_FIELDS = ("user", "metadata", "store")


def _set_default(args: dict[str, Any], dotted: str, value: Any) -> None:
    """``args[a][b] = value`` for ``dotted`` "a.b" unless it is set already."""
    *parents, name = dotted.split(".")
    for parent in parents:
        nested = args.get(parent)
        args[parent] = nested = dict(nested) if isinstance(nested, Mapping) else {}
        args = nested
    args.setdefault(name, value)


def _document_text(item: Any) -> Any:
    """Cohere-style ``{"text": …}`` documents as the plain strings any-llm takes."""
    return item.get("text") if isinstance(item, Mapping) else item


def _encode_vectors(reply: dict[str, Any]) -> None:
    """Each embedding as OpenAI's base64: little-endian float32 values."""
    for item in reply.get("data") or ():
        vector = item.get("embedding")
        if isinstance(vector, list):
            packed = struct.pack(f"<{len(vector)}f", *vector)
            item["embedding"] = base64.b64encode(packed).decode("ascii")


_SECRET_NAMES = ("key", "secret", "token", "password", "credential")


def _secret_values(args: Mapping[str, Any]) -> tuple[str, ...]:
    """Credential values among the SDK arguments, scrubbed from upstream messages."""
    return tuple(
        value
        for name, value in args.items()
        if isinstance(value, str) and any(part in name.lower() for part in _SECRET_NAMES)
    )
