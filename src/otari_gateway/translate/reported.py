"""What an upstream's answer says about itself, read alike from every wire format."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def reported_model(payload: Mapping[str, Any], fallback: str) -> str:
    """The model the upstream says answered (what a same-format relay shows the client);
    ``fallback`` when it names none."""
    model = payload.get("model")
    return model if isinstance(model, str) and model else fallback
