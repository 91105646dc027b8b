"""Usage of one upstream call, in the gateway's own provider-neutral shape."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Usage:
    """Counts as the provider reported them.

    ``prompt_tokens`` is every input token, cached ones included (OpenAI's convention);
    ``cache_read_tokens`` and ``cache_write_tokens`` say how many of them were served from or
    written to the provider's prompt cache. ``reasoning_tokens`` are part of
    ``completion_tokens``. ``images`` (generated), ``audio_seconds`` (transcribed) and
    ``characters`` (spoken) are the meters of the surfaces billed per image, per second of
    audio or per character.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    images: int = 0
    audio_seconds: Decimal = Decimal(0)
    characters: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
