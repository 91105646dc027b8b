"""Structured logs (and, later, metrics and tracing)."""
