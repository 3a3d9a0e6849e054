"""Deciders from the user's own package: ``FENCED_DECIDERS`` and the ``fenced.deciders`` entry points.

A team's resource types live in its own code, not in fenced's. ``FENCED_DECIDERS`` names
them by import path, comma-separated, the way uvicorn takes ``module:app``::

    FENCED_DECIDERS=myapp.domain:ORDERS,myapp.carts:deciders

Each ``module:attribute`` is a :class:`~fenced_client.domain.Decider`, or an iterable of them. A
package can also declare them once, in its ``pyproject.toml``, and every fenced process that
has it installed finds them::

    [project.entry-points."fenced.deciders"]
    orders = "myapp.domain:ORDERS"

The API replicas, the projector, ``fenced verify`` and ``fenced chaos`` load them the same way,
through :func:`install`, at startup; the SDK's consumer finds one by name with :func:`find`,
which reads the same two sources (and ``FENCED_OPEN_TYPES``). A plugin that cannot be imported, has the wrong shape or
declares a type name that is already declared stops startup with one line that says which.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from importlib.metadata import entry_points

from fenced_client import domain
from fenced_client.domain import Decider
from fenced_client.domain.open import open_decider

ENTRY_POINT_GROUP = "fenced.deciders"


class PluginError(LookupError):
    """A decider plugin cannot be loaded, or no decider declares a type; the message is the one line
    to show (a LookupError, as the consumer raised for an unknown type before plugins)."""


def resolve(path: str, origin: str) -> list[Decider]:
    """The deciders at ``module:attribute`` (``origin`` says where the path came from)."""
    module_name, sep, attr = path.strip().partition(":")
    if not sep or not module_name or not attr:
        raise PluginError(f"{origin}: {path!r} is not module:attribute (for example myapp.domain:ORDERS)")
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as e:  # any import failure is the one line to show
        raise PluginError(f"{origin}: cannot import {module_name!r}: {type(e).__name__}: {e}") from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as e:
            raise PluginError(f"{origin}: {module_name!r} has no attribute {attr!r}") from e
    if isinstance(obj, Decider):
        return [obj]
    if isinstance(obj, Iterable) and not isinstance(obj, (str, bytes)):
        found = list(obj)
        if found and all(isinstance(d, Decider) for d in found):
            return found
    raise PluginError(f"{origin}: {path} is a {type(obj).__name__}, not a fenced Decider or a list of them "
                      "(see fenced_client.domain.Decider)")


def discovered(spec: str) -> list[tuple[Decider, str]]:
    """Every decider the entry points and ``spec`` (FENCED_DECIDERS) declare, with its origin."""
    out: list[tuple[Decider, str]] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP}"
        out += [(d, origin) for d in resolve(ep.value, origin)]
    for path in (p for p in spec.split(",") if p.strip()):
        origin = f"FENCED_DECIDERS entry {path.strip()!r}"
        out += [(d, origin) for d in resolve(path, origin)]
    return out


_ORIGINS: dict[str, str] = {}


_OPEN: dict[str, Decider] = {}


def install(spec: str, types: Iterable[str] = (), open_types: Iterable[str] = ()) -> None:
    """Register the plugins' deciders and the open types' (FENCED_OPEN_TYPES), then check that
    every type in ``types`` has one.

    Installing the same decider object again is harmless (a test session builds many apps); a
    type name declared by two different deciders is an error.
    """
    found = discovered(spec)
    for t in open_types:
        found.append((_OPEN.setdefault(t, open_decider(t)), "FENCED_OPEN_TYPES"))
    for decider, origin in found:
        known = domain.get(decider.type)
        if known is not None and known is not decider:
            first = _ORIGINS.get(decider.type, "fenced itself")
            raise PluginError(f"resource type {decider.type!r} is declared twice: by {first} and by {origin}")
        domain.register(decider)
        _ORIGINS.setdefault(decider.type, origin)
    for t in types:
        if domain.get(t) is None:
            raise PluginError(f"no decider for resource type {t!r}: FENCED_RESOURCE_TYPES names it, but neither "
                              f"FENCED_DECIDERS nor an installed {ENTRY_POINT_GROUP!r} entry point declares it")


def find(resource_type: str, spec: str | None = None, open_types: Iterable[str] | None = None) -> Decider:
    """The decider of ``resource_type``, found the way the server finds it: already registered,
    or declared by an entry point, by ``spec`` (default: the ``FENCED_DECIDERS`` environment
    variable) or as an open type (default: ``FENCED_OPEN_TYPES``). :class:`PluginError` if none."""
    spec = os.environ.get("FENCED_DECIDERS", "") if spec is None else spec
    if open_types is None:
        open_types = [t.strip() for t in os.environ.get("FENCED_OPEN_TYPES", "").split(",") if t.strip()]
    known = domain.get(resource_type)
    if known is not None:
        return known
    install(spec, (), open_types)
    found = domain.get(resource_type)
    if found is None:
        raise PluginError(f"no decider for resource type {resource_type!r}: neither FENCED_DECIDERS, an installed "
                          f"{ENTRY_POINT_GROUP!r} entry point nor FENCED_OPEN_TYPES declares it")
    return found
