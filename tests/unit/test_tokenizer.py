"""Exact token counts from the shipped BPE files, and the chars/4 fallback."""

from __future__ import annotations

import hashlib

import pytest

from otari_gateway.pipeline.tokenizer import BPE_DIR, Tokenizers, encoding_name
from otari_gateway.pipeline.tokens import count_input_tokens

# The SHA-256 tiktoken itself expects of each published file.
OFFICIAL_SHA256 = {
    "9b5ad71b2ce5302211f9c61530b329a4922fc6a4": (
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
    ),
    "fb374d419588a4632f3f557e76b4b70aebbca790": (
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
    ),
}


@pytest.fixture(scope="module")
async def tokenizers() -> Tokenizers:
    loaded = Tokenizers()
    await loaded.preload(["gpt-4o-mini", "gpt-4"])
    return loaded


def test_shipped_files_are_the_published_ones() -> None:
    shipped = {path.name for path in BPE_DIR.iterdir() if path.name != "README.md"}
    assert shipped == set(OFFICIAL_SHA256)
    for name, digest in OFFICIAL_SHA256.items():
        assert hashlib.sha256((BPE_DIR / name).read_bytes()).hexdigest() == digest


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("claude-sonnet-4-5", None),
        ("gemini-2.5-flash", None),
        ("llama3.2", None),
    ],
)
def test_encoding_by_model(model: str, encoding: str | None) -> None:
    assert encoding_name(model) == encoding


async def test_counts_match_the_published_encodings(tokenizers: Tokenizers) -> None:
    o200k = tokenizers.counter("gpt-4o-mini")
    cl100k = tokenizers.counter("gpt-4")
    assert o200k is not None
    assert cl100k is not None
    assert o200k("hello world") == 2
    assert cl100k("hello world") == 2
    # Special-token text in a prompt is ordinary text, never a control token or an error.
    assert o200k("<|endoftext|>") > 1
    text = "The quick brown fox jumps over the lazy dog. " * 50
    assert o200k(text) == 10 * 50 + 1
    # CJK text runs well above four characters a token's rate: the reason to count exactly.
    assert o200k("東京は日本の首都です。") > len("東京は日本の首都です。") // 4


async def test_input_tokens_count_exactly_when_an_encoding_is_known(
    tokenizers: Tokenizers,
) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hello world"}]},
        ],
    }
    counter = tokenizers.counter("gpt-4o-mini")
    assert counter is not None
    # Chat framing as OpenAI bills it: 3 tokens and the role per message, 3 priming the
    # reply. For this body OpenAI reports prompt_tokens 16: 3 + 2 text, 2 * 4 + 3 framing.
    framing = 2 * 4 + 3
    exact = counter("Be brief.") + counter("hello world") + framing
    assert exact == 16
    assert await count_input_tokens(body, counter) == exact
    assert await count_input_tokens(body) == -(-len("Be brief.hello world") // 4) + framing


async def test_long_text_is_counted_off_the_loop_with_the_same_result(
    tokenizers: Tokenizers,
) -> None:
    counter = tokenizers.counter("gpt-4o-mini")
    assert counter is not None
    text = "lorem ipsum dolor sit amet " * 2000
    body = {"messages": [{"role": "user", "content": text}]}
    assert await count_input_tokens(body, counter) == counter(text) + 4 + 3


async def test_o200k_always_loads_and_cl100k_only_when_declared() -> None:
    tokenizers = Tokenizers()
    assert tokenizers.counter("gpt-4o") is None  # nothing loads during traffic
    await tokenizers.preload(["claude-sonnet-4-5"])
    counter = tokenizers.counter("gpt-4o")
    assert counter is not None
    assert counter("hello world") == 2
    assert tokenizers.counter("gpt-4") is None
    assert tokenizers.counter("claude-sonnet-4-5") is None


async def test_disabled_counting_loads_nothing() -> None:
    tokenizers = Tokenizers(enabled=False)
    await tokenizers.preload(["gpt-4o-mini", "gpt-4"])
    assert tokenizers.counter("gpt-4o-mini") is None
    assert tokenizers.counter("gpt-4") is None
