"""Extended thinking ⇄ reasoning effort: the two APIs' request knobs for hidden reasoning.

Anthropic asks for a token budget (``thinking: {type: enabled, budget_tokens}``: at least
1,024 and below ``max_tokens``); OpenAI for a coarse ``reasoning_effort``. The budgets
below are the common mapping (OpenAI's levels at roughly 2k / 8k / 24k reasoning tokens).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MIN_BUDGET = 1024
EFFORT_BUDGETS = {"low": 2048, "medium": 8192, "high": 24576}
# Below these budgets a thinking request reads as the lower effort.
_EFFORT_CEILINGS = (("low", 4096), ("medium", 16384))


def effort_for_thinking(thinking: Any) -> str | None:
    """``reasoning_effort`` for an Anthropic ``thinking`` setting; None when thinking is off."""
    if not isinstance(thinking, Mapping) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool):
        return "medium"
    for effort, ceiling in _EFFORT_CEILINGS:
        if budget < ceiling:
            return effort
    return "high"


def openai_reasons(model: str) -> bool:
    """Whether an OpenAI (or Azure OpenAI) model takes ``reasoning_effort``.

    OpenAI answers 400 when a model that does not reason (gpt-4o, gpt-4.1 …) is sent the
    field, so a thinking request to such a model is served without it. Its reasoning
    families are o1, o3, o4 and gpt-5, less the ones that refuse the field all the same:
    the first o1 previews and the chat-tuned gpt-5 variants.
    """
    name = model.lower()
    if name.startswith(("o1-mini", "o1-preview")) or "-chat" in name:
        return False
    return name.startswith(("o1", "o3", "o4", "gpt-5"))


def openai_fixed_sampling(model: str) -> bool:
    """Whether an OpenAI model refuses sampling settings (``temperature``, ``top_p``): its
    reasoning families, the early o1 previews included; the chat-tuned gpt-5 variants take
    them."""
    name = model.lower()
    return "-chat" not in name and name.startswith(("o1", "o3", "o4", "gpt-5"))


def thinking_for_effort(effort: Any, max_tokens: int) -> dict[str, Any] | None:
    """Anthropic ``thinking`` for a ``reasoning_effort``; None when there is no room for the
    smallest budget below ``max_tokens`` or the effort asks for none (``none``, ``minimal``)."""
    budget = EFFORT_BUDGETS.get(effort) if isinstance(effort, str) else None
    if budget is None:
        return None
    budget = min(budget, max_tokens - 1)
    if budget < MIN_BUDGET:
        return None
    return {"type": "enabled", "budget_tokens": budget}
