"""The providers enrichment asks about a person, one module per network.

Each module in this package that defines `ADAPTER` (a subclass of `http.Adapter`) is registered
under that adapter's `network`; adding a network is adding one module. `adapters()` builds them
all from the environment, so a process holds one adapter (one session, breaker and limiter) per
provider.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from functools import cache
from typing import Any

from services.enrichment.providers.http import Adapter


@cache
def registry() -> dict[str, type[Adapter]]:
    """network -> adapter class, for every module here that defines ADAPTER."""
    found: dict[str, type[Adapter]] = {}
    for module in pkgutil.iter_modules(__path__):
        adapter = getattr(importlib.import_module(f"{__name__}.{module.name}"), "ADAPTER", None)
        if adapter is None:
            continue
        if adapter.network in found:
            raise RuntimeError(f"two provider modules claim network {adapter.network!r}")
        found[adapter.network] = adapter
    return found


def adapters(env: Mapping[str, str] | None = None, **client_options: Any) -> dict[str, Adapter]:
    """One configured adapter per provider; a bad setting raises SettingsError naming it."""
    return {network: cls.from_env(env, **client_options) for network, cls in sorted(registry().items())}
