"""Progress hooks of a flow: callables the CLI registers in its own process for the length of a run.

They live in a module-level ``Hooks`` object, never in flow parameters: a flow shipped to Dask is
pickled by reference, so a hook holding a lock (a rich progress bar) is never pickled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

E = TypeVar("E")


class Hooks(Generic[E]):
    """Registered hooks, each called with every event."""

    def __init__(self) -> None:
        self._hooks: list[Callable[[E], None]] = []

    def __call__(self, event: E) -> None:
        for hook in self._hooks:
            hook(event)

    @contextmanager
    def added(self, hook: Callable[[E], None] | None) -> Iterator[None]:
        """``hook`` (if any) hears every event while the block runs."""
        if hook is None:
            yield
            return
        self._hooks.append(hook)
        try:
            yield
        finally:
            self._hooks.remove(hook)
