"""A live engine opened read-only from another process: ``engram.attach(name or pid)``."""
from __future__ import annotations

from engram import kernels, validate
from engram.errors import UnknownSpaceError, shown
from engram.recall.reader import SpaceReader
from engram.space.view import SpaceView
from engram.store.shm import resolve, spaces_of
from engram.store.tables import SpaceStore


class SpaceNames(list):
    """The names of an engine's spaces. Calling it (``eng.spaces()``, from when it was a
    method) still works, with a DeprecationWarning."""

    def __call__(self):
        import warnings
        warnings.warn("Engine.spaces is a property now: use eng.spaces, not eng.spaces()",
                      DeprecationWarning, stacklevel=2)
        return list(self)


class Attached:
    """A live engine opened read-only from another process (``engram.attach``)."""

    def __init__(self, engine):
        self._name = resolve(engine)
        self._views: dict = {}
        self._stores: list = []

    @property
    def name(self) -> str:
        return str(self._name)

    @property
    def spaces(self) -> SpaceNames:
        """The names of the engine's memory spaces, sorted."""
        return SpaceNames(spaces_of(self._name))

    def space(self, name: str = "default") -> SpaceView:
        name = validate.space_name(name)
        if name not in self._views:
            if name not in spaces_of(self._name):
                raise UnknownSpaceError(f"engine {self.name} has no memory space {shown(name)}; "
                                        f"it has {spaces_of(self._name)}")
            store = SpaceStore(self._name, name, create=False)
            self._stores.append(store)
            self._views[name] = SpaceView(SpaceReader(store, kernels.backend()))
        return self._views[name]

    def close(self) -> None:
        for store in self._stores:
            store.close(unlink=False)
        self._stores.clear()
        self._views.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def attach(engine) -> Attached:
    """Open a running engine read-only: by name (``Engine.name``) or by its owner's pid."""
    return Attached(engine)
