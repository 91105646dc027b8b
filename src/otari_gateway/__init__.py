"""Otari gateway: an OpenAI- and Anthropic-compatible LLM gateway you run yourself."""

__version__ = "0.1.0"
