"""One generic name -> object registry with lazy "module:attr" entries and plugin entry points.

Third parties register with the entry point groups `evalharness.backends` and
`evalharness.metrics` (value: "package.module:factory").
"""

from __future__ import annotations

import difflib
import functools
import importlib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from evalharness.errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; entries may be lazy "module:attr" strings resolved on first use."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        self._group = entry_point_group
        self._plugins_loaded = False
        # name families "<prefix>@<k>" (recall@10): prefix -> factory taking k, resolved on lookup
        self._families: dict[str, T | str] = {}

    def register(self, name: str, obj: T | str) -> None:
        if name in self._entries and self._entries[name] != obj:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj

    def register_family(self, prefix: str, obj: T | str) -> None:
        """Names `<prefix>@<k>` for any positive integer k resolve to `functools.partial(obj, k=k)`."""
        if prefix in self._families and self._families[prefix] != obj:
            raise RegistryError(f"{self.kind} family {prefix!r}@k is already registered")
        self._families[prefix] = obj

    def decorator(self, name: str) -> Callable[[T], T]:
        def wrap(obj: T) -> T:
            self.register(name, obj)
            return obj

        return wrap

    def _load_plugins(self) -> None:
        if self._plugins_loaded or self._group is None:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self._group):
            self._entries.setdefault(ep.name, ep.value)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted([*self._entries, *(f"{p}@k" for p in self._families)])

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries or (isinstance(name, str) and self._family_of(name) is not None)

    def _family_of(self, name: str) -> tuple[str, int] | None:
        prefix, at, k = name.rpartition("@")
        if at and prefix in self._families and k.isascii() and k.isdigit() and int(k) >= 1:
            return prefix, int(k)
        return None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        self._load_plugins()
        family = None if name in self._entries else self._family_of(name)
        if family is not None:
            prefix, k = family
            factory = self._families[prefix] = self._resolve(f"{prefix}@k", self._families[prefix])
            if not callable(factory):
                raise RegistryError(f"{self.kind} family {prefix!r}@k is not a factory")
            bound: T = functools.partial(factory, k=k)  # type: ignore[assignment]
            return bound
        if name not in self._entries:
            head, at, cutoff = name.rpartition("@")
            if at and head in self._families:
                raise RegistryError(f"{self.kind} {name!r}: give a cutoff k >= 1 in place of {cutoff!r}, e.g. {head}@10")
            close = difflib.get_close_matches(name, self._entries, n=1)
            close = close or difflib.get_close_matches(name, [f"{p}@k" for p in self._families], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(self.names())
            raise RegistryError(f"unknown {self.kind} {name!r}{hint} (known: {known})")
        obj = self._resolve(name, self._entries[name])
        self._entries[name] = obj
        return obj

    def _resolve(self, name: str, entry: T | str) -> T:
        if isinstance(entry, str):
            module_name, _, attr = entry.partition(":")
            try:
                obj: T = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise RegistryError(f"{self.kind} {name!r} could not be loaded from {entry!r}: {exc}") from exc
            return obj
        return entry
