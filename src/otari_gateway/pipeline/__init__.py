"""The request path every generation surface shares: admission, routing, relay, settlement."""
