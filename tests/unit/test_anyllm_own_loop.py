"""``on_own_loop``: an SDK call whose async code blocks runs off the gateway's event loop."""

from __future__ import annotations

import threading

import anyio
import pytest

from otari_gateway.providers.anyllm_stream import on_own_loop
from otari_gateway.providers.registry import PROVIDER_TYPES


async def _thread_of_blocking_call() -> int:
    # What watsonx's client does on the loop that awaits it: a blocking sign-in.
    threading.Event().wait(0.01)
    return threading.get_ident()


def test_the_call_runs_on_a_thread_of_its_own_and_hands_back_its_result() -> None:
    async def main() -> tuple[int, int]:
        return threading.get_ident(), await on_own_loop(_thread_of_blocking_call)

    loop_thread, call_thread = anyio.run(main)
    assert call_thread != loop_thread


def test_the_call_s_failure_reaches_the_caller() -> None:
    async def failing() -> None:
        raise ValueError("refused by the SDK")

    async def main() -> None:
        await on_own_loop(failing)

    with pytest.raises(ValueError, match="refused by the SDK"):
        anyio.run(main)


def test_watsonx_calls_run_off_the_loop() -> None:
    spec = PROVIDER_TYPES["watsonx"].sdk
    assert spec is not None and spec.blocking
