"""Filesystem access through fsspec, so a store is a local directory or any fsspec URL."""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import zarr
from fsspec.implementations.local import LocalFileSystem
from pydantic import ValidationError
from zarr.storage import FsspecStore, LocalStore

from store.errors import ConfigError, StoreError, validation_problems


def unreadable(path: str | os.PathLike[str], what: str, problem: str) -> StoreError:
    """The one message of a damaged file: ``<file>: unreadable <what> (<problem>)``."""
    return StoreError(f"{os.fspath(path)}: unreadable {what} ({problem})")


@contextmanager
def damaged_as_store_error(
    path: str | os.PathLike[str], what: str, *, missing: bool = False, errors: tuple[type[Exception], ...] = ()
) -> Iterator[None]:
    """Reading ``path``: a damaged file (truncated, empty, not Parquet/JSON, of the wrong shape, a
    document that no longer validates) becomes ``unreadable(path, what, …)``, the one line the CLI
    prints, not a library traceback. A missing file stays ``FileNotFoundError`` (callers tell
    "absent" or "removed meanwhile" apart) unless ``missing``: where every file must exist (a run
    folder) it is damage too. ``errors``: the exceptions of a reader that raises its own (YAML's,
    safetensors')."""
    try:
        yield
    except FileNotFoundError as exc:
        if not missing:
            raise
        raise unreadable(path, what, "no such file") from exc  # safetensors' has no strerror
    except ValidationError as exc:
        raise unreadable(path, what, validation_problems(exc)) from exc
    except (pa.ArrowException, OSError, ValueError, KeyError, TypeError, AttributeError, *errors) as exc:
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
        raise unreadable(path, what, " ".join(problem.split())) from exc


def output_file(out: str | os.PathLike[str], what: str, suffixes: tuple[str, ...] = ()) -> Path:
    """A command's ``--out`` checked before any work (``what`` names the file it should be, e.g. "a
    .csv or .parquet file"): a usable name with one of ``suffixes`` (any when empty); not a folder,
    nor a device or pipe, which writing would replace or block on; in a folder that exists or can be
    created below the nearest existing one, which this process can write. Every problem is a
    ``ConfigError`` naming ``out``. Creates nothing, so a dry run writes nothing."""
    text = os.fspath(out)
    path = Path(text)
    try:
        is_dir, exists, is_file = path.is_dir(), path.exists(), path.is_file()
        folder = path.absolute().parent
        while not folder.exists():  # the nearest folder that exists; the writer creates those below it
            folder = folder.parent
        folder_is_dir = folder.is_dir()
    except OSError as exc:  # a name too long, a loop of links
        raise ConfigError(f"--out {text}: not a usable file name: {exc.strerror or exc}") from None
    if not text.strip() or is_dir:
        raise ConfigError(f"--out {text!r}: is a folder; give {what} name")
    if suffixes and path.suffix.lower() not in suffixes:
        raise ConfigError(f"--out {text}: use {what} name")
    if exists and not is_file:
        raise ConfigError(f"--out {text}: exists and is not a regular file; give another file name")
    if not folder_is_dir:
        raise ConfigError(f"--out {text}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {text}: cannot write in the folder {folder}")
    return path


@contextmanager
def writing_out(path: Path, what: str) -> Iterator[None]:
    """Writing ``what`` to a command's checked ``--out`` file (``output_file``): its missing folders
    are made first, and an OS error (a full disk) is a ``StoreError`` naming the file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield
    except OSError as exc:
        raise StoreError(f"--out {path}: cannot write {what} there: {exc.strerror or exc}") from None


@contextmanager
def atomic_path(target: str | os.PathLike[str], durable: bool = True) -> Iterator[str]:
    """A temporary path beside local ``target`` for the caller to write; renamed over ``target`` when
    the block ends without error, so readers never see half a file, and removed otherwise.

    The name keeps ``target``'s suffix (writers that pick a format by suffix still work) and starts
    with ``.tmp-`` (``store vacuum`` removes leftovers of killed writers). ``durable`` fsyncs the file
    before the rename, so a power loss cannot leave an empty file under the final name.
    """
    target = os.fspath(target)
    tmp = os.path.join(os.path.dirname(target), f".tmp-{uuid.uuid4().hex}-{os.path.basename(target)}")
    try:
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _modified(info: dict[str, Any]) -> float | None:
    for key in ("mtime", "LastModified", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        try:
            return float(value)
        except (TypeError, ValueError):  # an ISO string (gcsfs)
            return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    return None


class StoreFS:
    """A root URL plus the fsspec filesystem that serves it; paths are relative to the root."""

    # Object-store filesystems (s3fs, gcsfs, …) cache directory listings per process, and their
    # ``exists``/``info``/``open`` answer from those listings: a reader would then never see an index
    # part, consolidated file or set that another process wrote after it first listed the directory.
    # Every listing here must be the server's, so the cache is off for remote URLs (local: no cache).
    # s3fs also HEADs an object before each whole-object GET (to split reads over 50 MB into
    # concurrent ranges; nothing here is that large): ``max_concurrency=1`` makes a read one GET.
    REMOTE_OPTIONS: dict[str, Any] = {"use_listings_cache": False}
    PROTOCOL_OPTIONS: dict[str, dict[str, Any]] = {"s3": {"max_concurrency": 1}, "s3a": {"max_concurrency": 1}}

    def __init__(self, url: str | os.PathLike[str]) -> None:
        url = os.fspath(url)
        fs, root = fsspec.core.url_to_fs(url)
        self.is_local = isinstance(fs, LocalFileSystem)
        self.options: dict[str, Any] = {}
        if not self.is_local:
            protocols = [fs.protocol] if isinstance(fs.protocol, str) else list(fs.protocol)
            self.options = dict(self.REMOTE_OPTIONS)
            for p in protocols:
                self.options |= self.PROTOCOL_OPTIONS.get(p, {})
        if self.options:
            fs, root = fsspec.core.url_to_fs(url, **self.options)
        self.fs: fsspec.AbstractFileSystem = fs
        self.root = root.rstrip("/") or "/"
        self.url = os.path.abspath(url) if self.is_local else url.rstrip("/")

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *[p.strip("/") for p in parts if p]])

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def ls(self, rel: str) -> list[str]:
        """Names (not paths) directly under ``rel``; empty when it does not exist."""
        try:  # one LIST on an object store (not a HEAD, a probing LIST, then the LIST)
            names = self.fs.ls(self.path(rel), detail=False)
        except FileNotFoundError:
            return []
        return sorted(os.path.basename(x.rstrip("/")) for x in names)

    def modified(self, rel: str) -> float | None:
        """When ``rel`` was last written (POSIX seconds): a file's time, or for a directory (a key
        prefix on object stores, which has no time of its own) the newest of the files under it;
        None when the filesystem reports no time. Filesystems name it differently: ``mtime``
        (local), ``LastModified`` (s3fs), ``updated`` (gcsfs), ``created`` (memory)."""
        p = self.path(rel)
        try:
            info = self.fs.info(p)
            entries = [info] if info.get("type") != "directory" else list(self.fs.find(p, detail=True).values())
        except FileNotFoundError:
            return None
        if info.get("type") == "directory" and self.is_local:
            entries.append(info)  # a local directory has its own time
        times = [t for t in map(_modified, entries) if t is not None]
        return max(times) if times else None

    def makedirs(self, rel: str) -> None:
        """Create the folder ``rel`` (and its parents) if absent; a path that cannot be one (a file in
        the way, no permission) is a ``StoreError`` naming it."""
        target = self.path(rel)
        try:
            self.fs.makedirs(target, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {target}: {exc.strerror or exc}") from exc

    def write_bytes_atomic(self, rel: str, data: bytes) -> None:
        """Write then rename (local) or a single PUT (object stores): readers never see half a file."""
        target = self.path(rel)
        parent = os.path.dirname(target)
        try:
            self.fs.makedirs(parent, exist_ok=True)
            if self.is_local:
                with atomic_path(target) as tmp, open(tmp, "wb") as f:
                    f.write(data)
            else:
                self.fs.pipe_file(target, data)
        except OSError as exc:
            raise StoreError(f"cannot write {target}: {exc.strerror or exc}") from exc

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        """Create ``rel`` with ``data`` unless it exists (O_EXCL locally, mode "xb" elsewhere, which
        s3fs maps to a conditional PUT); False when it exists. For locks that writers never take."""
        target = self.path(rel)
        try:
            self.fs.makedirs(os.path.dirname(target), exist_ok=True)
            if self.is_local:
                fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            else:
                with self.fs.open(target, "xb") as f:
                    f.write(data)
        except FileExistsError:
            return False
        except OSError as exc:
            raise StoreError(f"cannot create {target}: {exc.strerror or exc}") from exc
        return True

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self.path(rel))

    def write_parquet(self, rel: str, table: pa.Table) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        self.write_bytes_atomic(rel, buf.getvalue())

    def read_parquet(self, rel: str) -> pa.Table:
        data = self.read_bytes(rel)
        with damaged_as_store_error(self.path(rel), "Parquet file"):
            return pq.read_table(io.BytesIO(data))

    def read_json(self, rel: str, what: str) -> dict[str, Any]:
        """A JSON object; ``what`` names it in the error when the file is damaged or holds another
        kind of JSON value."""
        data = self.read_bytes(rel)
        with damaged_as_store_error(self.path(rel), what):
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise TypeError(f"a JSON {type(doc).__name__}, not an object")
            return doc

    def read_parquet_dir(self, rel: str, schema: pa.Schema) -> pa.Table:
        """Concatenate every ``*.parquet`` directly under ``rel`` (temp files are skipped); a column the
        schema gained after a part was written reads as nulls, so older parts stay readable."""
        names = [n for n in self.ls(rel) if n.endswith(".parquet") and not n.startswith(".")]
        tables = [self.read_parquet(f"{rel}/{n}") for n in names]
        if not tables:
            return schema.empty_table()
        for i, t in enumerate(tables):
            for f in schema:
                if f.name not in t.column_names:
                    t = t.append_column(f.name, pa.nulls(t.num_rows, f.type))
            tables[i] = t.select(schema.names).cast(schema)
        return pa.concat_tables(tables)

    def rm(self, rel: str, recursive: bool = True) -> None:
        p = self.path(rel)
        if self.fs.exists(p):
            self.fs.rm(p, recursive=recursive)

    def zarr_store(self, rel: str, read_only: bool = False) -> Any:
        if self.is_local:
            return LocalStore(self.path(rel), read_only=read_only)
        return FsspecStore.from_url(f"{self.url}/{rel.strip('/')}", storage_options=self.options, read_only=read_only)

    def open_group(self, rel: str, mode: Literal["r", "r+", "a", "w", "w-"] = "r") -> zarr.Group:
        return zarr.open_group(self.zarr_store(rel, read_only=mode == "r"), mode=mode, zarr_format=3)
