"""Route tables for fakes whose paths carry parameters (a model id, a deployment)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from tests.fakes.server import Handler


class PatternRoutes(Mapping[tuple[str, str], Handler]):
    """``{(METHOD, regex): handler}`` looked up by a request's method and full path."""

    def __init__(self, routes: Mapping[tuple[str, str], Handler]) -> None:
        self._routes = [
            (method, re.compile(pattern), handler) for (method, pattern), handler in routes.items()
        ]

    def __getitem__(self, key: tuple[str, str]) -> Handler:
        method, path = key
        for route_method, pattern, handler in self._routes:
            if route_method == method and pattern.fullmatch(path):
                return handler
        raise KeyError(key)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter((method, pattern.pattern) for method, pattern, _ in self._routes)

    def __len__(self) -> int:
        return len(self._routes)
