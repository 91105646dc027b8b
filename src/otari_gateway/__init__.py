"""Otari gateway: an OpenAI- and Anthropic-compatible LLM gateway you run yourself."""

import sys

__version__ = "0.1.0"

# structlog imports rich for pretty console tracebacks whenever rich is installed (any-llm
# depends on it). The gateway renders JSON logs, and rich costs about 4 MB in every worker,
# so structlog is first imported with rich hidden (a None entry makes its import fail);
# rich itself stays importable for any-llm.
if "structlog" not in sys.modules and "rich" not in sys.modules:
    sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]
