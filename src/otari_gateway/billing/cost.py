"""The one home of money math: cost of a usage record, and worst-case estimates.

Pure and exact: ``Decimal`` throughout, rounded once to a millionth of a dollar at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from otari_gateway.usage import Usage

MILLION = Decimal(1_000_000)
QUANTUM = Decimal("0.000001")
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Price:
    """USD rates for one model. ``None`` means the meter is not priced (costs nothing).

    Cached reads and cache writes fall back to the input rate when they have none of
    their own, which is how providers bill models without cache pricing.
    """

    input_per_million: Decimal | None = None
    output_per_million: Decimal | None = None
    cache_read_per_million: Decimal | None = None
    cache_write_per_million: Decimal | None = None
    per_image: Decimal | None = None
    per_request: Decimal | None = None
    per_audio_second: Decimal | None = None
    per_million_characters: Decimal | None = None
    # Long-context pricing: (input-token threshold, price) pairs, ascending. A request whose
    # input exceeds a threshold is billed entirely at that tier's rates, as providers do.
    tiers: tuple[tuple[int, Price], ...] = ()
    # Not money, but known from the same price data: input + output tokens the model can
    # handle, which caps the worst case a budget hold assumes.
    context_window: int | None = None

    def for_input(self, prompt_tokens: int) -> Price:
        chosen = self
        for threshold, tier in self.tiers:
            if prompt_tokens > threshold:
                chosen = tier
        return chosen

    @property
    def is_free(self) -> bool:
        return all(
            not rate
            for rate in (
                self.input_per_million,
                self.output_per_million,
                self.cache_read_per_million,
                self.cache_write_per_million,
                self.per_image,
                self.per_request,
                self.per_audio_second,
                self.per_million_characters,
            )
        )


def round_money(amount: Decimal) -> Decimal:
    return amount.quantize(QUANTUM)


def _rate(value: Decimal | None, fallback: Decimal | None = None) -> Decimal:
    if value is not None:
        return value
    return fallback if fallback is not None else ZERO


def cost_of(usage: Usage, price: Price) -> Decimal:
    """Σ meters × rate. Cached and cache-write tokens are part of ``prompt_tokens`` and are
    billed at their own rates instead of the input rate."""
    price = price.for_input(usage.prompt_tokens)
    return round_money(_tokens_cost(usage, price) + _per_unit(price, usage))


def batch_cost(usage: Usage, price: Price, requests: int, multiplier: Decimal) -> Decimal:
    """A batch's cost: its summed usage at the base rates, ``per_request`` once per
    completed request, all × ``multiplier`` (the provider's batch discount).

    Long-context tiers are not applied: they depend on each request's input, and a batch
    reports only the sum over all its requests.
    """
    total = _tokens_cost(usage, price) + requests * _rate(price.per_request)
    return round_money(total * multiplier)


def _tokens_cost(usage: Usage, price: Price) -> Decimal:
    uncached = max(0, usage.prompt_tokens - usage.cache_read_tokens - usage.cache_write_tokens)
    input_rate = _rate(price.input_per_million)
    return (
        uncached * input_rate
        + usage.cache_read_tokens * _rate(price.cache_read_per_million, price.input_per_million)
        + usage.cache_write_tokens * _rate(price.cache_write_per_million, price.input_per_million)
        + usage.completion_tokens * _rate(price.output_per_million)
    ) / MILLION


def _per_unit(price: Price, units: Usage) -> Decimal:
    """The meters that are not tokens: per request, per image, per second of audio, per
    character."""
    return (
        _rate(price.per_request)
        + units.images * _rate(price.per_image)
        + units.audio_seconds * _rate(price.per_audio_second)
        + units.characters * _rate(price.per_million_characters) / MILLION
    )


NO_UNITS = Usage()


def estimate_cost(
    input_tokens: int, max_output_tokens: int, price: Price, units: Usage = NO_UNITS
) -> Decimal:
    """The most a request can cost: all input uncached, every allowed output token used
    (no more than the model's context window leaves after the input), plus the non-token
    ``units`` (images, seconds of audio, characters) the request is known to ask for.

    Rounded up so the reservation is never below what ``cost_of`` can later charge.
    """
    if price.context_window is not None:
        max_output_tokens = max(0, min(max_output_tokens, price.context_window - input_tokens))
    price = price.for_input(input_tokens)
    worst_input = max(_rate(price.input_per_million), _rate(price.cache_write_per_million))
    total = (input_tokens * worst_input + max_output_tokens * _rate(price.output_per_million)) / (
        MILLION
    )
    total += _per_unit(price, units)
    return total.quantize(QUANTUM, rounding=ROUND_CEILING)
