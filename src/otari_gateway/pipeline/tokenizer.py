"""Exact input-token counts with tiktoken, for models whose encoding tiktoken knows.

The BPE rank files ship in ``bpe/`` because tiktoken would otherwise download them on
first use and gateways often run without internet access; tiktoken verifies each file
against the SHA-256 it expects before using it. Encodings load at start-up only, never
during traffic: building one takes about 0.4 s, mostly holding the GIL, which would stall
every request on the worker. ``o200k_base`` (every current OpenAI chat model; ~45 MB) always
loads; ``cl100k_base`` (GPT-4, GPT-3.5, the embedding models; ~20 MB) only when a configured
model declares it. Models without a loaded encoding (Claude, Gemini, most open models, and
undeclared legacy ones) are estimated at four characters per token instead.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

import anyio
import structlog
import tiktoken

log = structlog.get_logger(__name__)

BPE_DIR = Path(__file__).parent / "bpe"
SHIPPED_ENCODINGS = frozenset({"cl100k_base", "o200k_base"})
ALWAYS_LOADED = "o200k_base"
# Text beyond this many characters is tokenised off the event loop (tiktoken releases the
# GIL), so one huge prompt cannot stall every other request on the worker.
INLINE_CHARS = 16_384

Counter = Callable[[str], int]

_load_lock = threading.Lock()


@lru_cache(maxsize=4096)
def encoding_name(model: str) -> str | None:
    """The shipped encoding tiktoken uses for ``model``, or None."""
    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        return None
    return name if name in SHIPPED_ENCODINGS else None


def _load(name: str) -> tiktoken.Encoding:
    with _load_lock:
        previous = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(BPE_DIR)
        try:
            encoding = tiktoken.get_encoding(name)
        finally:
            if previous is None:
                del os.environ["TIKTOKEN_CACHE_DIR"]
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = previous
    # tiktoken keeps a Python copy of the ranks only to pickle the encoding, which the
    # gateway never does; the Rust core holds its own. Dropping it saves ~30 MB per worker.
    encoding._mergeable_ranks = {}
    return encoding


class Tokenizers:
    """The encodings this process loaded at start-up."""

    def __init__(self, *, enabled: bool = True) -> None:
        self._enabled = enabled
        self._counters: dict[str, Counter] = {}

    async def preload(self, models: Iterable[str]) -> None:
        """Load ``o200k_base`` and the encodings of the configured ``models`` (start-up)."""
        if not self._enabled:
            return
        wanted = {ALWAYS_LOADED} | {encoding_name(model) for model in models} - {None}
        for name in sorted(n for n in wanted if n is not None and n not in self._counters):
            await anyio.to_thread.run_sync(self._load, name)

    def counter(self, model: str) -> Counter | None:
        """Exact counting for ``model`` if its encoding is loaded, else None."""
        name = encoding_name(model)
        return None if name is None else self._counters.get(name)

    def _load(self, name: str) -> None:
        try:
            self._counters[name] = _counter(_load(name))
        except Exception as exc:  # noqa: BLE001 -- a damaged install must not stop the gateway
            log.warning("tokenizer.load_failed", encoding=name, error=type(exc).__name__)


def _counter(encoding: tiktoken.Encoding) -> Counter:
    def count(text: str) -> int:
        return len(encoding.encode_ordinary(text))

    return count
