"""The functions the engine calls outside itself (contract sections 1 and 4), bundled so tests can swap them.

The defaults are imported lazily on first use: the engine can be built (and can run every step that does not
need a given function) even where a dependency is unavailable, and importing ``bot.conversation`` stays cheap.

Data that lives in the store (a commune's hamlets) reaches the pure engine the same way: ``Services.hamlets`` is
a plain function of a commune code. By default it asks whatever source the caller installed for the current
step with :func:`hamlet_source` (the pipeline installs a database lookup inside its transaction), so the engine
never sees a session and a test or the console without a database simply gets no list (free-text answers).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Services", "context_hamlets", "default_services", "hamlet_source"]

HamletLookup = Callable[[str], Sequence[str]]

#: The hamlet lookup installed for the current step (a context variable: per thread and per task).
_HAMLET_SOURCE: ContextVar[HamletLookup | None] = ContextVar("bot_conversation_hamlet_source", default=None)


@contextlib.contextmanager
def hamlet_source(lookup: HamletLookup | None) -> Iterator[None]:
    """Make ``lookup`` answer :func:`context_hamlets` for the duration of the ``with`` block."""
    token = _HAMLET_SOURCE.set(lookup)
    try:
        yield
    finally:
        _HAMLET_SOURCE.reset(token)


def context_hamlets(commune_code: str) -> list[str]:
    """Return the hamlets of ``commune_code`` from the installed source; none when no source is installed."""
    lookup = _HAMLET_SOURCE.get()
    if lookup is None:
        return []
    return [name for name in lookup(commune_code) if isinstance(name, str) and name.strip()]


@dataclass(frozen=True)
class Services:
    """Parsers, the legal core and the commune's hamlet list, as plain callables.

    ``assess(data, on=date)`` returns an object with ``to_dict()`` (or a dict) and raises an exception with a
    ``problems`` list (``assessment.InputError``) for invalid input. ``hamlets(commune_code)`` returns the
    hamlet names the commune keeps (possibly none).
    """

    parse_int: Callable[[str], int | None]
    parse_number: Callable[[str], float | None]
    parse_money: Callable[[str], Any]
    resolve_commune: Callable[[str], list[Any]]
    assess: Callable[..., Any]
    hamlets: HamletLookup = field(default=context_hamlets)

    def replace(self, **changes: Callable[..., Any]) -> Services:
        """Return a copy with some functions replaced."""
        values = {
            name: getattr(self, name)
            for name in ("parse_int", "parse_number", "parse_money", "resolve_commune", "assess", "hamlets")
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
    """Return the production functions (``bot.parsing``, ``bot.offices.assess``, the installed hamlet source)."""
    return Services(
        parse_int=_lazy("bot.parsing.numbers", "parse_int"),
        parse_number=_lazy("bot.parsing.numbers", "parse_number"),
        parse_money=_lazy("bot.parsing.money", "parse_money"),
        resolve_commune=_lazy("bot.parsing.communes", "resolve_commune"),
        # The deployment's office names (bot/offices.py) apply to every assessment the chat makes.
        assess=_lazy("bot.offices", "assess"),
        hamlets=context_hamlets,
    )
