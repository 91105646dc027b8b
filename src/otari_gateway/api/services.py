"""What the HTTP handlers are given: built once in ``create_app``, passed in, never global."""

from __future__ import annotations

from dataclasses import dataclass

from otari_gateway.config import GatewayConfig
from otari_gateway.pipeline.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Services:
    config: GatewayConfig
    runtime: Runtime
    started_at: int
