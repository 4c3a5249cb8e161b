"""One small generic registry; each design axis has one (ATTENTION, POSITION, FFN, NORM, MIXER...)."""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from archlab.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a config ``kind`` string to a component class or factory."""

    def __init__(self, axis: str):
        self.axis = axis  # the config field the kind lives in, used in error messages
        self._items: dict[str, T] = {}

    def register(self, kind: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if kind in self._items and self._items[kind] is not obj:
                raise ValueError(f"{self.axis}: kind {kind!r} is registered twice")
            self._items[kind] = obj
            return obj

        return deco

    def get(self, kind: str) -> T:
        try:
            return self._items[kind]
        except KeyError:
            close = difflib.get_close_matches(kind, list(self._items), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{self.axis}: unknown kind {kind!r}; registered: {', '.join(sorted(self._items))}{hint}"
            ) from None

    def __contains__(self, kind: str) -> bool:
        return kind in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)
