"""One registry per pluggable kind (store, embedder, extractor, ...), keyed by spec strings.

A spec is ``name`` or ``name:argument`` (``minilm``, ``minilm:fp32``, ``sqlite``). Backends
register a factory under a name; ``create(spec, **kwargs)`` builds one. This replaces
``if backend == ...`` chains: adding a backend is one ``register`` call in its own module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import UnknownBackendError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@EMBEDDERS.register("minilm")`` on a factory ``(arg: str | None, **kw) -> T``."""

        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return decorate

    def names(self) -> list[str]:
        return sorted(self._factories)

    def create(self, spec: str, **kwargs: object) -> T:
        name, _, arg = spec.partition(":")
        factory = self._factories.get(name)
        if factory is None:
            known = ", ".join(self.names()) or "none"
            raise UnknownBackendError(f"unknown {self.kind} {spec!r}; known: {known}")
        return factory(arg or None, **kwargs)
