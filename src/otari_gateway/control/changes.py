"""How the control plane tells the request path that cached state changed.

Management writes apply from the next request on the process that handled them; the
listener (wired in ``app.py``) drops this process's caches and, where Redis is configured,
tells the other processes.
"""

from __future__ import annotations

from typing import Protocol


class ChangeListener(Protocol):
    def keys_changed(self) -> None: ...

    def users_changed(self) -> None: ...

    def pricing_changed(self) -> None: ...
