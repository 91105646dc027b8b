"""Exceptions raised by the format translators.

They are deliberately not ``GatewayError`` subclasses: the translators stay pure and
import-light, and the pipeline decides which HTTP error each one becomes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class TranslationError(ValueError):
    """A request uses something the target wire format cannot express.

    The message names the offending field so it can be shown to the client as-is.
    """


class UpstreamStreamError(Exception):
    """The upstream reported an error in the middle of a stream."""

    def __init__(self, message: str, error_type: str = "api_error") -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type

    @classmethod
    def from_payload(cls, error: Any) -> UpstreamStreamError:
        """Build from the ``error`` object of an Anthropic event or an OpenAI chunk."""
        if not isinstance(error, Mapping):
            return cls(str(error) if error else "upstream stream error")
        message = error.get("message")
        error_type = error.get("type")
        return cls(
            message if isinstance(message, str) and message else "upstream stream error",
            error_type if isinstance(error_type, str) and error_type else "api_error",
        )
