"""Loading untrusted pickles (the official MMSA feature files) without running their code.

A pickle is a program: ``pickle.load`` calls whatever global the file names (``posix.system``,
``builtins.eval``, ...), so a feature file downloaded from a mirror is code from the internet.
``RestrictedUnpickler`` resolves only the globals such files need to rebuild numpy arrays, dtypes
and numpy scalars, plus builtin containers, and refuses every other global by name before anything
could be called.
"""

from __future__ import annotations

import os
import pickle
from typing import IO, Any

import numpy as np

from store.errors import ManifestError

try:  # numpy >= 2 keeps these in numpy._core; pickles written by numpy 1.x name numpy.core
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (``encode(text, 'latin1')``) and
    nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refused _codecs.encode with {type(text).__name__} and encoding {encoding!r}")
    return text.encode("latin1")


#: (module, name) -> the object a pickle gets for it; every other global is refused
_ALLOWED: dict[tuple[str, str], Any] = {
    **{(m, "_reconstruct"): _multiarray._reconstruct for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): _multiarray.scalar for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    # protocol 5 rebuilds arrays from in-band buffers with numeric._frombuffer (numpy >= 1.23)
    **{(m, "_frombuffer"): _numeric._frombuffer  # type: ignore[attr-defined]  # private, no stub
       for m in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    **{(b, c.__name__): c for b in ("builtins", "__builtin__")
       for c in (dict, list, tuple, set, frozenset, bytearray, bytes, str, int, float, complex, bool)},
}


class UnsafePickleError(ManifestError):
    """A pickle names a global outside the allow-list, or is not a readable pickle."""


def allowed_global(module: str, name: str) -> Any | None:
    """The object a pickle may reference as ``module.name``, or None when it is refused."""
    obj = _ALLOWED.get((module, name))
    if obj is not None:
        return obj
    if module == "numpy":  # scalar types (np.float32, ...), never functions or submodules
        found = getattr(np, name, None)
        return found if isinstance(found, type) and issubclass(found, np.generic) else None
    if module == "numpy.dtypes":  # dtype classes (Float32DType, ...)
        found = getattr(np.dtypes, name, None)
        return found if isinstance(found, type) and issubclass(found, np.dtype) else None
    return None


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ``allowed_global`` names; any other global raises
    ``UnsafePickleError`` naming it, before it could be called."""

    def __init__(self, file: IO[bytes], source: str = "pickle") -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        obj = allowed_global(module, name)
        if obj is None:
            raise UnsafePickleError(
                f"{self.source}: refused to load the global {module}.{name}: not a plain feature pickle "
                "(only numpy arrays, dtypes, numpy scalars and builtin containers are allowed)"
            )
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: refused a persistent id: not a plain feature pickle")


def load_untrusted(path: str | os.PathLike[str]) -> Any:
    """Unpickle the file at ``path`` with ``RestrictedUnpickler`` (streamed: a multi-GB MOSEI file
    is not read into memory twice); every failure is a ``ManifestError`` naming the file."""
    source = os.fspath(path)
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, source).load()
    except UnsafePickleError:
        raise
    except OSError as exc:
        raise ManifestError(f"{source}: cannot read the pickle: {exc.strerror or exc}") from exc
    except Exception as exc:  # truncated or garbage bytes raise anything from EOFError to ValueError
        raise UnsafePickleError(f"{source}: not a readable pickle ({type(exc).__name__}: {exc})") from None
