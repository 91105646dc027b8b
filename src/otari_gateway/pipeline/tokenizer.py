"""Exact input-token counts with tiktoken, for models whose encoding tiktoken knows.

The BPE rank files ship in ``bpe/`` because tiktoken would otherwise download them on
first use and gateways often run without internet access; tiktoken verifies each file
against the SHA-256 it expects before using it. An encoding is loaded once per process
(about 0.4 s and 30–50 MB for ``o200k_base``), in a worker thread so the event loop never
waits on it. Models without a known encoding (Claude, Gemini, most open models) and the
requests that arrive while an encoding is still loading are estimated at four characters
per token instead.
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
    """The loaded encodings of one process, loaded on first need."""

    def __init__(self, *, enabled: bool = True) -> None:
        self._enabled = enabled
        self._counters: dict[str, Counter] = {}
        self._loading: set[str] = set()
        self._failed: set[str] = set()

    async def preload(self, models: Iterable[str]) -> None:
        """Load the encodings of the configured models before traffic arrives."""
        for name in {encoding_name(model) for model in models} - {None}:
            assert name is not None
            await self._load_in_thread(name)

    def counter(self, model: str) -> Counter | None:
        """Exact counting for ``model`` if its encoding is ready; otherwise None, and a
        load starts in the background when the encoding is known but not loaded yet."""
        if not self._enabled:
            return None
        name = encoding_name(model)
        if name is None:
            return None
        counter = self._counters.get(name)
        if counter is not None:
            return counter
        if name not in self._loading and name not in self._failed:
            self._loading.add(name)
            threading.Thread(target=self._load_sync, args=(name,), daemon=True).start()
        return None

    async def _load_in_thread(self, name: str) -> None:
        if not self._enabled or name in self._counters or name in self._failed:
            return
        self._loading.add(name)
        await anyio.to_thread.run_sync(self._load_sync, name)

    def _load_sync(self, name: str) -> None:
        try:
            self._counters[name] = _counter(_load(name))
        except Exception as exc:  # noqa: BLE001 -- a damaged install must not stop the gateway
            log.warning("tokenizer.load_failed", encoding=name, error=type(exc).__name__)
            self._failed.add(name)
        finally:
            self._loading.discard(name)


def _counter(encoding: tiktoken.Encoding) -> Counter:
    def count(text: str) -> int:
        return len(encoding.encode_ordinary(text))

    return count
