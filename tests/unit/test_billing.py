"""Money math, price lookups and budget periods: exact, pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from otari_gateway.billing.cost import Price, batch_cost, cost_of, estimate_cost
from otari_gateway.billing.periods import advance, next_reset
from otari_gateway.billing.pricing import PriceBook, PriceRow, genai_price, price_from_fields
from otari_gateway.usage import Usage

D = Decimal
GPT = Price(
    input_per_million=D("2.5"), output_per_million=D("10"), cache_read_per_million=D("1.25")
)


def test_cost_bills_each_meter_at_its_rate_and_rounds_once() -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=200, cache_read_tokens=400)
    # 600 × 2.5 + 400 × 1.25 + 200 × 10 = 1500 + 500 + 2000 micro-dollars
    assert cost_of(usage, GPT) == D("0.004000")


def test_reasoning_tokens_are_billed_once_inside_completion_tokens() -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=200, reasoning_tokens=150)
    # 1000 × 2.5 + 200 × 10: the 150 reasoning tokens are among the 200 output tokens.
    assert cost_of(usage, GPT) == D("0.004500")


def test_batch_cost_discounts_the_sum_and_bills_each_completed_request() -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=200, cache_read_tokens=400)
    assert batch_cost(usage, GPT, 3, D("0.5")) == D("0.002000")
    per_request = Price(input_per_million=D(1), per_request=D("0.001"))
    assert batch_cost(Usage(prompt_tokens=1000), per_request, 4, D("0.5")) == D("0.002500")
    # A tier applies per request; a batch reports only its sum, so the base rates apply.
    tiered = Price(input_per_million=D(1), tiers=((100, Price(input_per_million=D(9))),))
    assert batch_cost(Usage(prompt_tokens=1000), tiered, 1, D(1)) == D("0.001000")


def test_cache_write_falls_back_to_the_input_rate() -> None:
    usage = Usage(prompt_tokens=100, cache_write_tokens=100)
    assert cost_of(usage, GPT) == D("0.000250")
    priced = Price(input_per_million=D(3), cache_write_per_million=D("3.75"))
    assert cost_of(usage, priced) == D("0.000375")


def test_sub_micro_costs_round_half_even_once() -> None:
    cheap = Price(input_per_million=D("0.15"), output_per_million=D("0.6"))
    assert cost_of(Usage(prompt_tokens=3, completion_tokens=1), cheap) == D("0.000001")
    assert cost_of(Usage(prompt_tokens=1), cheap) == D("0.000000")


def test_per_request_price_and_free_models() -> None:
    rerank = Price(input_per_million=D(1), per_request=D("0.002"))
    assert cost_of(Usage(prompt_tokens=1000), rerank) == D("0.003000")
    assert Price(input_per_million=D(0), output_per_million=D(0)).is_free
    assert not rerank.is_free


def test_long_context_tier_applies_to_the_whole_request() -> None:
    tiered = Price(
        input_per_million=D(3),
        output_per_million=D(15),
        tiers=((200_000, Price(input_per_million=D(6), output_per_million=D("22.5"))),),
    )
    assert cost_of(Usage(prompt_tokens=200_000), tiered) == D("0.600000")
    assert cost_of(Usage(prompt_tokens=200_001), tiered) == D("1.200006")


def test_estimate_is_a_ceiling_and_respects_the_context_window() -> None:
    assert estimate_cost(1, 0, GPT) == D("0.000003")  # 0.0000025 rounded up
    assert estimate_cost(100, 1000, GPT) >= cost_of(
        Usage(prompt_tokens=100, completion_tokens=1000), GPT
    )
    windowed = Price(input_per_million=D(1), output_per_million=D(1), context_window=1000)
    assert estimate_cost(900, 50_000, windowed) == D("0.001000")  # output capped at 100


def test_price_from_api_fields() -> None:
    price = price_from_fields({"input_price_per_million": 1.5, "output_price_per_million": "2"})
    assert price.input_per_million == D("1.5") and price.output_per_million == D(2)
    assert price.cache_read_per_million is None


def test_genai_prices_fallback_with_tiers_and_window() -> None:
    sonnet = genai_price("anthropic", "claude-sonnet-4-5")
    assert sonnet is not None and sonnet.input_per_million == D(3)
    assert sonnet.tiers and sonnet.context_window
    assert genai_price("openai", "no-such-model-xyz") is None
    assert genai_price("vllm", "anything") is None


async def test_price_book_order_versions_then_config_then_default() -> None:
    now = datetime.now(UTC)
    rows = [
        PriceRow("openai:m", now - timedelta(days=2), Price(input_per_million=D(1))),
        PriceRow("openai:m", now - timedelta(days=1), Price(input_per_million=D(2))),
        PriceRow("openai:m", now + timedelta(days=1), Price(input_per_million=D(9))),
    ]

    async def load() -> list[PriceRow]:
        return rows

    book = PriceBook(
        {"openai:c": Price(input_per_million=D(5))}, load_rows=load, default_pricing=False
    )
    assert (await book.lookup("openai:m", "openai", "m")).input_per_million == D(2)  # type: ignore[union-attr]
    assert (await book.lookup("openai:c", "openai", "c")).input_per_million == D(5)  # type: ignore[union-attr]
    assert await book.lookup("openai:gpt-4o", "openai", "gpt-4o") is None


@pytest.mark.parametrize(
    ("alignment", "after", "expected"),
    [
        (
            "calendar_day",
            datetime(2026, 3, 8, 23, 59, tzinfo=UTC),
            datetime(2026, 3, 9, tzinfo=UTC),
        ),
        ("calendar_week", datetime(2026, 3, 8, 12, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC)),
        (
            "calendar_week",
            datetime(2026, 3, 9, 0, 0, tzinfo=UTC),
            datetime(2026, 3, 16, tzinfo=UTC),
        ),
        (
            "calendar_month",
            datetime(2026, 12, 31, 23, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
        ),
        ("calendar_month", datetime(2026, 1, 31, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
    ],
)
def test_calendar_resets_are_utc_boundaries(
    alignment: str, after: datetime, expected: datetime
) -> None:
    assert next_reset(after, duration_sec=None, alignment=alignment) == expected


def test_rolling_periods_stay_on_their_grid_and_need_aware_times() -> None:
    due = datetime(2026, 1, 1, tzinfo=UTC)
    assert advance(
        due, due + timedelta(seconds=250), duration_sec=100, alignment=None
    ) == due + timedelta(seconds=300)
    assert next_reset(due, duration_sec=None, alignment=None) is None
    with pytest.raises(ValueError, match="timezone-aware"):
        next_reset(datetime(2026, 1, 1), duration_sec=60, alignment=None)
