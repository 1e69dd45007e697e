"""The functions the engine calls outside itself (contract sections 1 and 4), bundled so tests can swap them.

The defaults are imported lazily on first use: the engine can be built (and can run every step that does not
need a given function) even where a dependency is unavailable, and importing ``bot.conversation`` stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Services", "default_services"]


@dataclass(frozen=True)
class Services:
    """Parsers and the legal core, as plain callables.

    ``assess(data, on=date)`` returns an object with ``to_dict()`` (or a dict) and raises an exception with a
    ``problems`` list (``assessment.InputError``) for invalid input.
    """

    parse_int: Callable[[str], int | None]
    parse_number: Callable[[str], float | None]
    parse_money: Callable[[str], Any]
    resolve_commune: Callable[[str], list[Any]]
    assess: Callable[..., Any]

    def replace(self, **changes: Callable[..., Any]) -> Services:
        """Return a copy with some functions replaced."""
        values = {
            name: getattr(self, name)
            for name in ("parse_int", "parse_number", "parse_money", "resolve_commune", "assess")
        }
        values.update(changes)
        return Services(**values)


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """Return a function that imports ``module.name`` on its first call and forwards to it."""
    target: Callable[..., Any] | None = None

    def call(*args: Any, **kwargs: Any) -> Any:
        nonlocal target
        if target is None:
            target = getattr(importlib.import_module(module), name)
        return target(*args, **kwargs)

    call.__name__ = name
    call.__qualname__ = f"{module}.{name}"
    return call


def default_services() -> Services:
    """Return the production functions (``bot.parsing`` and ``assessment.assess``)."""
    return Services(
        parse_int=_lazy("bot.parsing.numbers", "parse_int"),
        parse_number=_lazy("bot.parsing.numbers", "parse_number"),
        parse_money=_lazy("bot.parsing.money", "parse_money"),
        resolve_commune=_lazy("bot.parsing.communes", "resolve_commune"),
        assess=_lazy("assessment", "assess"),
    )
