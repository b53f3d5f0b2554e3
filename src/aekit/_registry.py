"""One registry mechanism for everything aekit looks up by name.

Models, likelihoods and datasets each get a :class:`Registry`; a ``@register("name")``
decorator adds an entry and ``get(name, **kwargs)`` builds it. Unknown names are refused
with the list of known ones, so no ``if name == ...`` chain exists anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from aekit.exceptions import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> factory table with helpful errors.

    Parameters
    ----------
    kind : str
        What the entries are ("model", "likelihood", ...), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that adds ``obj`` under ``name`` and records the name on it."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise InputError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            try:
                obj._registry_name = name  # type: ignore[attr-defined]
            except (AttributeError, TypeError):  # plain functions of some kinds refuse
                pass
            return obj

        return add

    def lookup(self, name: str) -> T:
        """Return the registered object, or raise ``ValueError`` naming the known ones."""
        if not isinstance(name, str) or name not in self._entries:
            known = ", ".join(sorted(self._entries))
            raise InputError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}")
        return self._entries[name]

    def get(self, name: str, **kwargs: Any) -> Any:
        """Build the entry ``name`` with ``kwargs``."""
        return self.lookup(name)(**kwargs)  # type: ignore[operator]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


MODELS: Registry[type] = Registry("model")


def register(name: str) -> Callable[[type], type]:
    """Register an autoencoder class under ``name`` (snake_case, also the CLI key).

    Examples
    --------
    >>> from aekit import list_models
    >>> "vae" in list_models()
    True
    """
    return MODELS.register(name)


def get_model(name: str, **params: Any) -> Any:
    """Create a registered model by name, e.g. ``get_model("vae", n_components=2)``.

    Examples
    --------
    >>> from aekit import get_model
    >>> get_model("ae", n_components=3).n_components
    3
    """
    return MODELS.get(name, **params)


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return MODELS.names()
