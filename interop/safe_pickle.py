"""Loading untrusted pickles (the official MMSA feature files) without running their code.

A pickle is a program: ``pickle.load`` calls whatever global the file names (``posix.system``,
``builtins.eval``, ...), so a feature file downloaded from a mirror is code from the internet.
``RestrictedUnpickler`` resolves only the globals such files need to rebuild numpy arrays, dtypes
and numpy scalars, plus builtin containers, and refuses every other global by name before anything
could be called. The allowed ones are the forms array pickles use, never a constructor that takes a
size (``bytes(10**10)``, ``numpy.ndarray(shape)``): every value comes from the file's own bytes, so a
tiny file cannot claim gigabytes or hand out uninitialised memory as features.
"""

from __future__ import annotations

import os
import pickle
from typing import IO, Any, cast

import numpy as np

from store.errors import ManifestError

try:  # numpy >= 2 keeps these in numpy._core; pickles written by numpy 1.x name numpy.core
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


class UnsafePickleError(ManifestError):
    """A pickle names a global outside the allow-list, or is not a readable pickle."""


class _Refused(Exception):  # noqa: N818 - a verdict on the file, reported by RestrictedUnpickler.load
    """A call of an allowed global in a form feature pickles never use; ``load`` names the file."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (``encode(text, 'latin1')``) and
    nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"refused _codecs.encode with {type(text).__name__} and encoding {encoding!r}")
    return text.encode("latin1")


class _ArrayClass:
    """What a pickle gets for ``numpy.ndarray``: the class argument of ``_reconstruct``, not the
    class itself, whose call ``ndarray(shape, dtype)`` returns uninitialised memory of any size."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise _Refused("refused a call of numpy.ndarray (uninitialised memory of a size the file names): "
                       "array pickles rebuild arrays with numpy's _reconstruct and their own bytes")


_NDARRAY = _ArrayClass()


def _reconstruct(cls: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``_reconstruct`` as every array pickle calls it, ``(ndarray, (0,), b'b')``: an empty array
    that the pickle's state then fills from its bytes. Another shape would be uninitialised memory
    (features nobody wrote) of a size the file names."""
    if cls is not _NDARRAY or tuple(shape) != (0,):
        shown = "numpy.ndarray" if cls is _NDARRAY else repr(cls)
        raise _Refused(f"refused numpy _reconstruct({shown}, {shape!r}): array pickles rebuild an empty ndarray, "
                       "shape (0,), and fill it from the file's bytes")
    return cast(np.ndarray, _multiarray._reconstruct(np.ndarray, (0,), dtype))


def _scalar(dtype: Any, *value: Any) -> Any:
    """``scalar(dtype, bytes)`` as numpy scalars pickle; without the value numpy would allocate a
    zero-filled scalar of the dtype's size (``V2147483647``: 2 GiB per call)."""
    if len(value) != 1:
        raise _Refused("refused a numpy scalar without its value: numpy scalars pickle as scalar(dtype, value)")
    return _multiarray.scalar(dtype, value[0])


def _no_size(cls: type) -> Any:
    """``cls`` (bytes, bytearray, numpy.void) as pickles call it, with data; an integer argument is
    a size, a zero-filled buffer the file does not hold."""

    def make(*args: Any) -> Any:
        if args and isinstance(args[0], (int, np.integer)):
            raise _Refused(f"refused {cls.__name__}({args[0]}): an integer here is a size, a zero-filled "
                           "buffer the file does not hold")
        return cls(*args)

    return make


#: (module, name) -> the object a pickle gets for it; every other global is refused
_ALLOWED: dict[tuple[str, str], Any] = {
    **{(m, "_reconstruct"): _reconstruct for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): _scalar for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    # protocol 5 rebuilds arrays from in-band buffers with numeric._frombuffer (numpy >= 1.23)
    **{(m, "_frombuffer"): _numeric._frombuffer  # type: ignore[attr-defined]  # private, no stub
       for m in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    **{(b, c.__name__): c for b in ("builtins", "__builtin__")
       for c in (dict, list, tuple, set, frozenset, str, int, float, complex, bool)},
    **{(b, c.__name__): _no_size(c) for b in ("builtins", "__builtin__") for c in (bytearray, bytes)},
}


def allowed_global(module: str, name: str) -> Any | None:
    """The object a pickle may reference as ``module.name``, or None when it is refused."""
    obj = _ALLOWED.get((module, name))
    if obj is not None:
        return obj
    if module == "numpy":  # scalar types (np.float32, ...), never functions or submodules
        found = getattr(np, name, None)
        if not (isinstance(found, type) and issubclass(found, np.generic)):
            return None
        return _no_size(found) if issubclass(found, np.void) else found  # np.void(10**9): 1 GB of zeros
    if module == "numpy.dtypes":  # dtype classes (Float32DType, ...)
        found = getattr(np.dtypes, name, None)
        return found if isinstance(found, type) and issubclass(found, np.dtype) else None
    return None


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ``allowed_global`` names; any other global raises
    ``UnsafePickleError`` naming it, before it could be called."""

    def __init__(self, file: IO[bytes], source: str = "pickle") -> None:
        # Python 2's str (numpy's array bytes, and text) stays bytes: the default ASCII fails on any
        # array, latin1 would turn UTF-8 text into mojibake; Python 3 pickles hold no such strings
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        obj = allowed_global(module, name)
        if obj is None:
            raise UnsafePickleError(
                f"{self.source}: refused to load the global {module}.{name}: not a plain feature pickle "
                "(only numpy arrays, dtypes, numpy scalars and builtin containers are allowed)"
            )
        return obj

    def load(self) -> Any:
        try:
            return super().load()
        except _Refused as exc:
            raise UnsafePickleError(f"{self.source}: {exc}") from None

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
