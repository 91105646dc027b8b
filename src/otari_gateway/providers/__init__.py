"""Upstream adapters, one module per wire format, behind the ``Provider`` protocol."""
