"""Configuration: interpolation, env overrides, unknown keys, and clear rejections."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from otari_gateway.billing.pricing import PRICE_FIELDS
from otari_gateway.config import (
    DEFAULT_MAX_BODY_BYTES,
    PRICE_ENTRY_FIELDS,
    ConfigError,
    build_config,
    load_config,
)
from otari_gateway.providers.base import Operation
from otari_gateway.providers.registry import build_providers


def test_defaults() -> None:
    config = build_config({}, environ={})
    assert config.port == 8000
    assert config.database_url == "sqlite:///./otari.db"
    assert config.max_request_body_bytes == DEFAULT_MAX_BODY_BYTES
    assert config.require_pricing is True


def test_interpolation_reads_environment_and_defaults() -> None:
    raw = {
        "master_key": "${KEY}",
        "providers": {"openai": {"api_key": "${OPENAI:-}", "api_base": "${BASE:-http://x/v1}"}},
    }
    config = build_config(raw, environ={"KEY": "secret"})
    assert config.master_key == "secret"
    assert config.providers["openai"].api_key == ""
    assert config.providers["openai"].api_base == "http://x/v1"


def test_unset_variable_names_it() -> None:
    with pytest.raises(ConfigError, match="MISSING_VAR"):
        build_config({"master_key": "${MISSING_VAR}"}, environ={})


def test_env_overrides_scalars_with_coercion() -> None:
    config = build_config(
        {"port": 1234, "enable_docs": True},
        environ={"OTARI_PORT": "9000", "OTARI_ENABLE_DOCS": "false", "OTARI_MASTER_KEY": "k"},
    )
    assert config.port == 9000
    assert config.enable_docs is False
    assert config.master_key == "k"


def test_an_empty_variable_leaves_the_setting_alone() -> None:
    config = build_config({"rate_limit_rpm": 60}, environ={"OTARI_RATE_LIMIT_RPM": ""})
    assert config.rate_limit_rpm == 60


def test_unknown_keys_warn_but_do_not_fail() -> None:
    with capture_logs() as logs:
        config = build_config({"port": 8001, "made_up": 1}, environ={})
    assert config.port == 8001
    assert any(entry.get("keys") == ["made_up"] for entry in logs)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"port": "not-a-port"}, "port"),
        ({"port": 70000}, "port"),
        ({"log_level": "loud"}, "log_level"),
        ({"providers": {"openai": {"timeout": -1}}}, "providers.openai.timeout"),
        ({"providers": {"a:b": {}}}, "providers"),
    ],
)
def test_invalid_values_name_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build_config(raw, environ={})


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"input_price_per_million": -5}, "greater than or equal to 0"),
        ({"input_price_per_milion": 3}, "input_price_per_milion"),
        ({"output_price_per_million": "abc"}, "valid decimal"),
        ({"output_price_per_million": "NaN"}, "output_price_per_million"),
        ({}, "names no price"),
    ],
)
def test_config_prices_are_checked_as_the_api_checks_them(
    entry: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigError, match=f"pricing: up:m: .*{problem}"):
        build_config({"pricing": {"up:m": entry}}, environ={})


def test_config_price_selectors_and_redis_urls_are_checked() -> None:
    with pytest.raises(ConfigError, match="'gpt-4o' must be 'instance:model'"):
        build_config({"pricing": {"gpt-4o": {"input_price_per_million": 1}}}, environ={})
    with pytest.raises(ConfigError, match="redis_url: must be a redis://"):
        build_config({"redis_url": "http://127.0.0.1:6379"}, environ={})
    priced = build_config(
        {"pricing": {"up:m": {"input_price_per_million": "0.15"}}, "redis_url": "redis://h/1"},
        environ={},
    )
    assert priced.pricing == {"up:m": {"input_price_per_million": "0.15"}}


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"OTARI_MODE": "platform"}, "needs OTARI_AI_TOKEN"),
        ({"OTARI_AI_TOKEN": "gw_x"}, "not available in this build"),
        ({"OTARI_MODE": "platform", "OTARI_AI_TOKEN": "gw_x"}, "not available in this build"),
        ({"OTARI_MODE": "hosted"}, "'standalone' or 'platform'"),
    ],
)
def test_platform_mode_stops_start_up_saying_why(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        build_config({}, environ=environ)


def test_standalone_mode_may_be_named_explicitly() -> None:
    build_config({}, environ={"OTARI_MODE": "standalone", "OTARI_AI_TOKEN": "gw_x"})


def test_price_fields_are_the_ones_billing_reads() -> None:
    assert set(PRICE_ENTRY_FIELDS) == set(PRICE_FIELDS)


def test_a_config_price_may_carry_effective_at_as_the_api_s_does() -> None:
    entry = {"input_price_per_million": 1, "effective_at": "2026-01-01T00:00:00Z"}
    with capture_logs() as logs:
        config = build_config({"pricing": {"up:m": entry}}, environ={})
    assert config.pricing["up:m"]["input_price_per_million"] == 1
    assert [line["event"] for line in logs] == ["config.pricing_effective_at_ignored"]


def test_a_mistyped_key_is_rejected_for_a_relayed_provider() -> None:
    config = build_config({"providers": {"openai": {"api_kee": "x"}}}, environ={})
    with pytest.raises(ConfigError, match=r"providers\.openai\.api_kee"):
        build_providers(config, environ={})


def test_sdk_provider_keys_reach_the_sdk_client() -> None:
    config = build_config(
        {
            "providers": {
                "bedrock": {
                    "region_name": "eu-west-3",
                    "aws_access_key_id": "AKIAEXAMPLE",
                    "client_args": {"aws_secret_access_key": "secret-value-123"},
                }
            }
        },
        environ={},
    )
    provider = build_providers(config, environ={})["bedrock"]
    assert provider._sdk_args == {  # type: ignore[attr-defined]
        "region_name": "eu-west-3",
        "aws_access_key_id": "AKIAEXAMPLE",
        "aws_secret_access_key": "secret-value-123",
    }
    assert "secret-value-123" in provider._secrets  # type: ignore[attr-defined]


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yml", environ={})
    bad = tmp_path / "bad.yml"
    bad.write_text("port: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, environ={})
    listed = tmp_path / "list.yml"
    listed.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listed, environ={})


def test_example_config_loads_without_any_secret_set() -> None:
    example = Path(__file__).resolve().parents[2] / "config.example.yml"
    config = load_config(example, environ={})
    assert "openai" in config.providers
    build_providers(config, environ={})


def test_unknown_provider_type_is_rejected() -> None:
    config = build_config({"providers": {"mine": {"api_key": "k"}}}, environ={})
    with pytest.raises(ConfigError, match="unknown provider_type 'mine'"):
        build_providers(config, environ={})


def test_native_key_variable_is_used_when_config_names_none() -> None:
    config = build_config({"providers": {"openai": {}}}, environ={})
    providers = build_providers(config, environ={"OPENAI_API_KEY": "sk-from-env"})
    assert providers["openai"]._headers["Authorization"] == "Bearer sk-from-env"  # type: ignore[attr-defined]


def test_responses_support_follows_the_type_unless_the_instance_says_otherwise() -> None:
    config = build_config(
        {
            "providers": {
                "openai": {},
                "deepseek": {},
                "mine": {"provider_type": "openai", "native_responses": False},
                "box": {
                    "provider_type": "vllm",
                    "api_base": "http://h/v1",
                    "native_responses": True,
                },
                "anthropic": {},
            }
        },
        environ={},
    )
    providers = build_providers(config, environ={})
    native = {
        name: Operation.RESPONSES in provider.capabilities.operations
        for name, provider in providers.items()
    }
    assert native == {
        "openai": True,
        "deepseek": False,
        "mine": False,
        "box": True,
        "anthropic": False,
    }
    assert Operation.CHAT in providers["mine"].capabilities.operations


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"api_version": "latest"}, r"providers\.az\.api_version: 'latest' is neither"),
        ({"deployment": "gpt4o"}, r"providers\.az\.deployment: only used with a dated"),
        ({"api_version": "2024-10-21", "deployment": 7}, r"providers\.az\.deployment: must be"),
        ({"api_version": "2024-10-21", "deployments": "x"}, r"providers\.az\.deployments: unknown"),
    ],
)
def test_azure_openai_settings_are_checked(block: dict[str, object], message: str) -> None:
    raw = {"provider_type": "azureopenai", "api_base": "https://r.openai.azure.com", **block}
    config = build_config({"providers": {"az": raw}}, environ={})
    with pytest.raises(ConfigError, match=message):
        build_providers(config, environ={})


def test_azure_openai_endpoint_and_key_come_from_its_variables() -> None:
    config = build_config({"providers": {"azureopenai": {}}}, environ={})
    environ = {
        "AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com/openai/v1/",
        "AZURE_OPENAI_API_KEY": "key-from-env",
    }
    provider = build_providers(config, environ=environ)["azureopenai"]
    assert provider._headers["api-key"] == "key-from-env"  # type: ignore[attr-defined]
    # The pasted v1 prefix is not doubled.
    assert provider._url(Operation.CHAT, "gpt") == (  # type: ignore[attr-defined]
        "https://r.openai.azure.com/openai/v1/chat/completions"
    )
