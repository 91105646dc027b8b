"""Gateway configuration: YAML file, ``${VAR}`` interpolation, ``OTARI_<FIELD>`` overrides.

The loaded config is validated once at start-up into frozen pydantic models; a bad value
stops start-up with the field's name and the reason, an unknown key only warns.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

log = structlog.get_logger(__name__)

_ENV_PREFIX = "OTARI_"
# The config file's path, handed by ``otari serve`` to the processes it starts.
CONFIG_PATH_ENV = "OTARI_CONFIG"
_VAR_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


class ConfigError(Exception):
    """The configuration cannot be used; the message names what and why."""


class ProviderConfig(BaseModel):
    """One configured provider instance (``providers.<instance>``).

    Keys beyond these are kept: an any-llm provider type passes them to its SDK (Vertex
    ``project``/``location``, Bedrock ``region_name`` ...); any other type rejects them.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    provider_type: str | None = None
    api_key: str | None = None
    api_base: str | None = None
    client_args: dict[str, Any] = Field(default_factory=dict)
    models: tuple[str, ...] = ()
    timeout: float = Field(default=600.0, gt=0, description="seconds for a whole call")
    connect_timeout: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=512, ge=1)
    native_responses: bool | None = Field(
        default=None,
        description="whether the upstream serves /responses itself (unset: the type's default)",
    )
    discover_models: bool | None = Field(
        default=None, description="list the upstream's own models (unset: the global setting)"
    )


def _price() -> Any:
    return Field(default=None, ge=0, allow_inf_nan=False)


class PriceEntry(BaseModel):
    """One ``pricing:`` entry (USD), checked as ``POST /v1/pricing`` checks a price."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_price_per_million: Decimal | None = _price()
    output_price_per_million: Decimal | None = _price()
    cache_read_price_per_million: Decimal | None = _price()
    cache_write_price_per_million: Decimal | None = _price()
    price_per_image: Decimal | None = _price()
    price_per_request: Decimal | None = _price()
    price_per_audio_second: Decimal | None = _price()
    price_per_million_characters: Decimal | None = _price()
    # Accepted as POST /v1/pricing accepts it; a config price applies from start-up.
    effective_at: datetime | None = None


PRICE_ENTRY_FIELDS = tuple(name for name in PriceEntry.model_fields if name != "effective_at")


class GatewayConfig(BaseModel):
    """The whole ``config.yml``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=1, le=65535)
    master_key: str | None = None
    database_url: str = "sqlite:///./otari.db"
    redis_url: str | None = None
    auto_migrate: bool = True
    bootstrap_api_key: bool = False
    log_level: str = "info"
    log_prompts: bool = False
    enable_metrics: bool = False
    enable_docs: bool = True
    cors_allow_origins: tuple[str, ...] = ()
    max_request_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    rate_limit_rpm: int | None = Field(default=None, ge=1)
    rate_limit_tpm: int | None = Field(default=None, ge=1)
    require_pricing: bool = True
    default_pricing: bool = True
    reject_user_mismatch: bool = True
    budget_estimate_default_output_tokens: int = Field(default=1024, ge=1)
    exact_token_counts: bool = True
    shutdown_grace_seconds: int = Field(
        default=30,
        ge=1,
        description="how long a stopping worker waits for requests in flight before cancelling",
    )
    budget_lease_ttl_seconds: float = Field(default=30.0, ge=3.0, le=3600.0)
    batch_price_multiplier: Decimal = Field(
        default=Decimal("0.5"),
        ge=0,
        description="share of the model's price a batch is billed at (OpenAI's batch discount)",
    )
    discover_models: bool = True
    model_discovery_ttl_seconds: float = Field(default=300.0, gt=0)
    model_discovery_failure_ttl_seconds: float = Field(default=30.0, gt=0)
    model_discovery_timeout_seconds: float = Field(default=5.0, gt=0)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict)
    pricing: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"critical", "error", "warning", "info", "debug"}:
            raise ValueError("must be one of critical, error, warning, info, debug")
        return level

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("pricing")
    @classmethod
    def _priced(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for selector, fields in value.items():
            instance, colon, model = selector.partition(":")
            if not colon or not instance.strip() or not model.strip():
                raise ValueError(f"{selector!r} must be 'instance:model'")
            try:
                entry = PriceEntry.model_validate(fields)
            except ValidationError as exc:
                raise ValueError(f"{selector}: {_problems(exc)}") from None
            if all(price is None for price in entry.model_dump(exclude={"effective_at"}).values()):
                names = ", ".join(PRICE_ENTRY_FIELDS)
                raise ValueError(f"{selector}: names no price (one of {names})")
        return value

    @field_validator("providers")
    @classmethod
    def _instance_names(cls, value: dict[str, ProviderConfig]) -> dict[str, ProviderConfig]:
        for name in value:
            if not name or ":" in name or "/" in name:
                raise ValueError(f"instance name {name!r} must be non-empty without ':' or '/'")
        return value


def interpolate(value: Any, *, environ: Mapping[str, str]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a loaded YAML tree."""
    if isinstance(value, str):
        return _VAR_PATTERN.sub(lambda match: _lookup(match, environ), value)
    if isinstance(value, list):
        return [interpolate(item, environ=environ) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item, environ=environ) for key, item in value.items()}
    return value


def _lookup(match: re.Match[str], environ: Mapping[str, str]) -> str:
    name, default = match.group(1), match.group(2)
    if name in environ:
        return environ[name]
    if default is not None:
        return default
    raise ConfigError(
        f"environment variable {name} is not set (referenced as ${{{name}}} in the config; "
        f"use ${{{name}:-default}} to make it optional)"
    )


def _env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    scalar_fields = {
        name
        for name, field in GatewayConfig.model_fields.items()
        if name not in {"providers", "aliases", "pricing", "cors_allow_origins"}
        and field.annotation is not None
    }
    overrides: dict[str, str] = {}
    for key, raw in environ.items():
        if key.startswith(_ENV_PREFIX):
            name = key[len(_ENV_PREFIX) :].lower()
            # An empty variable (``OTARI_RATE_LIMIT_RPM=``) leaves the setting alone.
            if name in scalar_fields and raw.strip():
                overrides[name] = raw
    if "OTARI_CORS_ALLOW_ORIGINS" in environ:
        origins = environ["OTARI_CORS_ALLOW_ORIGINS"].split(",")
        overrides["cors_allow_origins"] = [o.strip() for o in origins if o.strip()]  # type: ignore[assignment]
    return overrides


def build_config(
    raw: Mapping[str, Any], environ: Mapping[str, str] | None = None, *, warn: bool = True
) -> GatewayConfig:
    """Validate a loaded YAML mapping, applying interpolation and env overrides; ``warn``
    about unknown keys (the processes ``otari serve`` starts load it again, silently)."""
    env = os.environ if environ is None else environ
    _standalone(env)
    data = interpolate(dict(raw), environ=env)
    # YAML `null` for a section means "empty section".
    for section in ("providers", "aliases", "pricing"):
        if data.get(section) is None:
            data.pop(section, None)
    data.update(_env_overrides(env))
    unknown = sorted(set(data) - set(GatewayConfig.model_fields))
    if unknown and warn:
        log.warning("config.unknown_keys", keys=unknown)
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    dated = sorted(key for key, fields in config.pricing.items() if "effective_at" in fields)
    if dated and warn:
        log.warning("config.pricing_effective_at_ignored", models=dated)
    return config


def _standalone(environ: Mapping[str, str]) -> None:
    """Platform mode (the gateway run by otari.ai, which ``OTARI_AI_TOKEN`` turns on) is not
    in this build: asking for it stops start-up rather than run standalone unnoticed."""
    mode = environ.get("OTARI_MODE", "").strip().lower()
    token = environ.get("OTARI_AI_TOKEN", "").strip()
    if mode not in {"", "standalone", "platform"}:
        raise ConfigError(f"OTARI_MODE must be 'standalone' or 'platform', not {mode!r}")
    if mode == "platform" and not token:
        raise ConfigError("OTARI_MODE=platform needs OTARI_AI_TOKEN to be set")
    if mode == "platform" or (token and mode != "standalone"):
        raise ConfigError(
            "platform mode (OTARI_AI_TOKEN) is not available in this build of the gateway; "
            "unset OTARI_AI_TOKEN, or set OTARI_MODE=standalone, to run standalone"
        )


def _describe(exc: ValidationError) -> str:
    return "invalid configuration: " + _problems(exc)


def _problems(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "config"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return "; ".join(problems)


def load_config(
    path: str | Path | None, environ: Mapping[str, str] | None = None, *, warn: bool = True
) -> GatewayConfig:
    """Read ``path`` (or only the environment when it is None) into a ``GatewayConfig``."""
    raw: Any = {}
    if path is not None:
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file} is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {file} must hold a mapping at the top level")
    return build_config(raw, environ, warn=warn)
