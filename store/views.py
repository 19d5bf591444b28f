"""Aligned views: dense, padded per-modality arrays that training reads directly.

Layout under ``aligned/<view>/``: a Zarr v3 group with ``<m>/values [N, L, D]``,
``<m>/lengths [N]``, ``<m>/present [N]``, ``<m>/mean`` and ``<m>/std [D]`` per modality ``m``
(plus ``text_tokens/input_ids`` and ``text_tokens/attention_mask [N, T]`` when the text set has
token ids), ``clips.parquet`` (row order, labels, splits) and ``view.json`` (attrs + fingerprint),
written last: a view without ``view.json`` is incomplete and invisible.

Build identity: every build draws a random ``build_id``, kept in the group's attributes (its
``zarr.json``) and in ``view.json``. A reader holds the ``view.json`` and clip table it opened and
reads arrays by path, so each group open (``view_group``) checks the folder is still that build and
raises ``StoreError`` (``view 'v' … was rebuilt while this run was reading it (build A → B); rerun``)
instead of mixing two builds; the id comes with the group document, so the check reads nothing more.
Arrays already open keep reading chunks by path, so a reader that holds them across a swap checks
again itself (``AlignedView.check_unchanged``: training does once an epoch). A view written before
build ids has none in either place and opens as before; a rebuild of it still shows (no id → B).

Swap (``ViewWriter.finish``; ``<key>`` is a hash of the name): the old view's ``view.json`` is
renamed ``view.aside.json`` (invisible from here), its folder moved to ``aligned/.old-<key>``, the
build folder moved to ``aligned/<view>``, ``view.json`` written, the aside folder deleted. A folder
move is one rename locally; on object stores (copy, then delete) ``view.aside.json`` is copied last
and deleted first, so a folder holding it is whole. A failure while the new view goes in puts the
old one back and raises ``StoreError``. A process killed at any step leaves either a visible view
(the old or the new, never a mix) or an invisible one that the next build or ``open_view`` of that
name settles under the build lock (``_settle_swap``): a visible ``view.json`` wins and the aside copy
goes; else the whole aside copy comes back; else the old view's renamed description is restored.
While a live build holds the lock, a reader of the invisible view is told the view is being built.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import zarr

from store.errors import StoreError
from store.featureset import COMPRESSORS
from store.fs import StoreFS, damaged_as_store_error
from store.lock import describe, me, try_lock_object
from store.schema import CLASS_LABELS, conform

#: a view's clip table: the score and, for categorical targets, the class labels (null when absent)
CLIPS_SCHEMA = pa.schema(
    [("row", pa.int64()), ("clip_id", pa.string()), ("label", pa.float64()), ("split", pa.string())]
    + [(name, pa.string()) for name in CLASS_LABELS]
)


def _fs(store: Any) -> StoreFS:
    """Accept a FeatureStore, a StoreFS, a path or a URL."""
    if isinstance(store, StoreFS):
        return store
    if hasattr(store, "fs") and isinstance(store.fs, StoreFS):
        return store.fs
    return StoreFS(os.fspath(store))


def write_view(
    store: Any, name: str, arrays: dict[str, np.ndarray], clips: pa.Table, attrs: dict[str, Any]
) -> None:
    """Write a whole view from arrays in memory, replacing any previous one of that name."""
    with ViewWriter(store, name, clips.num_rows) as writer:
        for key, data in arrays.items():
            writer.write(key, np.asarray(data))
        writer.finish(clips, attrs)


#: a view build's lock older than this (its builder was killed) is broken by the next build
VIEW_LOCK_STALE_S = 3600.0

#: the old view's description while it is swapped out: a view without ``view.json`` is invisible
ASIDE_JSON = "view.aside.json"


def _key(name: str) -> str:
    """A hash of the view name: a view name may already take the 255 bytes a file name can have."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def _take_lock(fs: StoreFS, name: str, lock: str) -> None:
    """Create the build lock of view ``name`` (breaking a stale one), or raise naming its holder."""
    holder = try_lock_object(fs, lock, me("another run"), VIEW_LOCK_STALE_S)
    if holder is not None:
        raise StoreError(f"view {name!r} in {fs.url} is being built by {describe(holder)}; wait for it, or delete "
                         f"{fs.path(lock)} if that run is dead")


def _cause(exc: BaseException) -> str:
    """What went wrong, for a one-line message: the OS's words when there are some."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__


def _move_folder(fs: StoreFS, src: str, dst: str) -> None:
    """Move folder ``src`` to the absent ``dst`` so that a crash leaves one whole copy: locally one
    rename; on object stores (copy, then delete) ``ASIDE_JSON`` is copied last and deleted first, so
    a folder holding it is complete (``_settle_swap`` relies on it)."""
    source, target = fs.path(src), fs.path(dst)
    if fs.is_local:
        fs.fs.mv(source, target, recursive=True)
        return
    marker = f"{source}/{ASIDE_JSON}"
    files = sorted(f for f in fs.fs.find(source) if f.startswith(f"{source}/"))
    for batch in ([f for f in files if f != marker], [f for f in files if f == marker]):
        if batch:
            fs.fs.copy(batch, [target + f[len(source):] for f in batch])
    fs.rm(f"{src}/{ASIDE_JSON}")
    fs.rm(src)


def _settle_swap(fs: StoreFS, name: str) -> None:
    """Finish or undo the swap of view ``name`` that a failure or a killed process left (the module
    docstring lists the states); the caller holds the view's build lock. Never leaves a mix: a
    visible view stays, else the previous whole view comes back, else nothing is visible."""
    rel, old = f"aligned/{name}", f"aligned/.old-{_key(name)}"
    view_json, aside_json = f"{rel}/view.json", f"{rel}/{ASIDE_JSON}"
    try:
        if fs.exists(view_json):  # the swap got through, or never started: only leftovers to drop
            fs.rm(aside_json)  # an object-store rename copied but not yet deleted
            fs.rm(old)
            return
        if fs.exists(f"{old}/{ASIDE_JSON}"):  # the previous view, whole, moved aside
            fs.rm(rel)
            _move_folder(fs, old, rel)
        else:
            fs.rm(old)  # nothing, or an aside copy cut short: the previous view is still in rel
        if fs.exists(aside_json):
            fs.fs.mv(fs.path(aside_json), fs.path(view_json))
        else:
            fs.rm(rel)  # no description: an incomplete new build, which nothing can read
    except OSError as exc:
        raise StoreError(f"view {name!r} in {fs.url}: cannot restore the previous view from {fs.path(old)} "
                         f"({_cause(exc)}); the next build or open of the view retries") from exc


def _interrupted_swap(fs: StoreFS, name: str) -> bool:
    """Whether a swap of view ``name`` left its aside copy or the old view's renamed description."""
    return fs.exists(f"aligned/.old-{_key(name)}") or fs.exists(f"aligned/{name}/{ASIDE_JSON}")


def _recover_swap(fs: StoreFS, name: str) -> None:
    """An invisible view with an interrupted swap's leftovers is settled under the build lock (a
    live build holding it is reported as building the view, unless it has just made it visible)."""
    if not _interrupted_swap(fs, name):
        return
    rel, lock = f"aligned/{name}", f"aligned/.lock-{_key(name)}"
    try:
        _take_lock(fs, name, lock)
    except StoreError:
        if fs.exists(f"{rel}/view.json"):  # the swap finished meanwhile
            return
        raise
    try:
        _settle_swap(fs, name)
    finally:
        fs.rm(lock)


class ViewWriter:
    """Writes a view array by array or block by block (``create`` then ``write_block``), so a view
    larger than memory can be built. Use it as a context manager.

    The new view is built in ``aligned/.build-<key>`` under the lock ``aligned/.lock-<key>`` (``key``:
    a hash of the name):
    a build that fails leaves the previous view of the name as it was (not deleted before the new
    one exists), and a second build of the same name at once is refused instead of writing its
    arrays into the first one's folder (a view mixing two configs). ``finish`` swaps the new folder
    in (module docstring) and writes ``view.json`` last, so a reader never takes a half-written view
    for a complete one; ``build_id`` is this build's identity (group attrs and ``view.json``)."""

    def __init__(self, store: Any, name: str, n_clips: int) -> None:
        self.fs = _fs(store)
        self.name = name
        self.rel = f"aligned/{name}"
        key = _key(name)
        self.build = f"aligned/.build-{key}"
        self.old = f"aligned/.old-{key}"
        self.lock = f"aligned/.lock-{key}"
        self.n = n_clips
        self.build_id = secrets.token_hex(8)
        _take_lock(self.fs, name, self.lock)
        try:
            _settle_swap(self.fs, name)  # what a killed swap of this name left
            self.fs.rm(self.build)  # what a killed build of this name left
            self.group = zarr.open_group(self.fs.zarr_store(self.build), mode="w", zarr_format=3,
                                         attributes={"build_id": self.build_id})
        except BaseException:
            self.fs.rm(self.lock)
            raise

    def __enter__(self) -> ViewWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        """Release the lock; after a failure also drop the half-built folder (the old view stays)."""
        if exc_type is not None:
            self.fs.rm(self.build)
        self.fs.rm(self.lock)

    def create(self, key: str, shape: tuple[int, ...], dtype: Any) -> zarr.Array:
        """An empty per-clip array (first dimension = clips) or a vector such as mean/std."""
        if len(shape) >= 1 and key.split("/")[-1] not in ("mean", "std") and shape[0] != self.n:
            raise StoreError(f"view {self.name!r}: array {key!r} has {shape[0]} rows for {self.n} clips")
        return self.group.create_array(key, shape=shape, dtype=dtype, compressors=COMPRESSORS, **_layout(shape))

    def write(self, key: str, data: np.ndarray) -> None:
        arr = self.create(key, data.shape, data.dtype)
        if data.size:
            arr[...] = data

    @staticmethod
    def write_block(arr: zarr.Array, start: int, data: np.ndarray) -> None:
        """Rows ``[start, start + len(data))`` of a per-clip array (whole shards when ``start`` is a
        multiple of ``VIEW_SHARD``)."""
        if len(data):
            arr[start : start + len(data)] = data

    def finish(self, clips: pa.Table, attrs: dict[str, Any]) -> None:
        """Swap the built folder in for the view of this name, ``view.json`` last (module docstring);
        when the new view cannot be put in place the old one is put back and a ``StoreError`` says so."""
        self.fs.write_parquet(f"{self.build}/clips.parquet", conform(clips, CLIPS_SCHEMA))
        description = json.dumps({**attrs, "build_id": self.build_id}, sort_keys=True, default=str).encode()
        view_json = f"{self.rel}/view.json"
        try:
            if self.fs.exists(view_json):
                self.fs.fs.mv(self.fs.path(view_json), self.fs.path(self.rel, ASIDE_JSON))  # invisible from here
                _move_folder(self.fs, self.rel, self.old)
            _move_folder(self.fs, self.build, self.rel)
            self.fs.write_bytes_atomic(view_json, description)
        except (OSError, StoreError) as exc:
            failed = f"view {self.name!r} in {self.fs.url}: the new build could not replace the view ({_cause(exc)})"
            try:
                _settle_swap(self.fs, self.name)
            except StoreError as again:
                raise StoreError(f"{failed}; {again}") from exc
            raise StoreError(f"{failed}; the view is left as it was before this build") from exc
        self.fs.rm(self.old)


#: clips per zarr shard of a view's per-clip arrays (a block writer's natural unit)
VIEW_SHARD = 256


def _layout(shape: tuple[int, ...]) -> dict[str, Any]:
    """Per-clip arrays get one chunk per clip (a random read decompresses one clip) grouped into
    shards of up to ``VIEW_SHARD`` clips (few files); vectors such as mean/std are one chunk."""
    if len(shape) < 2:
        return {"chunks": shape or ()}
    clip = (1, *shape[1:])
    return {"chunks": clip, "shards": (max(1, min(VIEW_SHARD, shape[0])), *shape[1:])}


def group_array(group: zarr.Group, name: str) -> zarr.Array:
    """``group[name]``, which in a view is always an array (KeyError when absent)."""
    arr = group[name]
    if not isinstance(arr, zarr.Array):
        raise StoreError(f"{name!r} is a group, not an array")
    return arr


def view_group(store: Any, name: str, build_id: str | None) -> zarr.Group:
    """The zarr group of view ``name``, checked to be build ``build_id`` (the one whose ``view.json``
    the reader opened): arrays are read by path, so a rebuild swapped in meanwhile would pair the new
    arrays with the old clip table and statistics. The id comes with the group document (no extra
    read). A view written before build ids has none (``build_id`` None): it opens as before, and
    only a rebuild by this code, which has one, can be told from it."""
    fs = _fs(store)
    try:
        group = fs.open_group(f"aligned/{name}")
    except FileNotFoundError:  # zarr's GroupNotFoundError too: moved aside by a swap, or deleted
        raise StoreError(f"view {name!r} in {fs.url}: its arrays are gone (rebuilt or removed while this run "
                         "was reading it); rerun") from None
    found = group.attrs.get("build_id")
    if found != build_id:
        raise StoreError(f"view {name!r} in {fs.url} was rebuilt while this run was reading it "
                         f"(build {build_id or 'without id'} → {found or 'without id'}); rerun")
    return group


@dataclass
class AlignedView:
    """A committed view; arrays open lazily so DataLoader workers each open their own handles."""

    fs: StoreFS
    name: str
    attrs: dict[str, Any]
    clips: pa.Table

    @property
    def rel(self) -> str:
        return f"aligned/{self.name}"

    @property
    def fingerprint(self) -> str:
        return str(self.attrs.get("fingerprint", ""))

    @property
    def build_id(self) -> str | None:
        """The build this view was opened as (None: a view written before build ids)."""
        value = self.attrs.get("build_id")
        return None if value is None else str(value)

    @property
    def modalities(self) -> list[str]:
        return sorted(self.attrs.get("modalities", {}))

    def group(self) -> zarr.Group:
        """The arrays; a ``StoreError`` when the view was rebuilt since it was opened (``view_group``)."""
        return view_group(self.fs, self.name, self.build_id)

    def check_unchanged(self) -> None:
        """Raise ``StoreError`` if the view was rebuilt since it was opened: for readers that keep
        arrays open (training's DataLoader workers), whose chunk reads would follow the new build."""
        self.group()

    def array(self, name: str) -> zarr.Array:
        try:
            return group_array(self.group(), name)
        except KeyError:
            raise StoreError(f"view {self.name!r} has no array {name!r}") from None

    def read(self, name: str) -> np.ndarray:
        """A whole array; a damaged chunk is a ``StoreError`` naming the view and the array."""
        arr = self.array(name)
        with damaged_as_store_error(self.fs.path(self.rel, name), f"array of aligned view {self.name!r}"):
            return np.asarray(arr[...])

    def has_array(self, name: str) -> bool:
        try:
            self.group()[name]
        except KeyError:
            return False
        return True


def vacuum_views(store: Any) -> list[str]:
    """Clear what view builds and swaps of dead processes left (``store vacuum``); returns the
    store-relative folders removed or settled. Each build key is handled under its build lock, so
    a live build (a fresh lock) is left alone and no build starts meanwhile: a build folder or a lock
    whose build is dead (``VIEW_LOCK_STALE_S``) goes, and an interrupted swap's aside copy is
    settled as the next open would (``_settle_swap``: a visible view wins, else the previous whole
    view comes back). An aside copy whose view name no folder or description gives is kept."""
    fs = _fs(store)
    entries = fs.ls("aligned")
    names = {_key(n): n for n in entries if not n.startswith(".")}
    keys = sorted({e.split("-", 1)[1] for e in entries if e.startswith((".build-", ".lock-", ".old-"))})
    done: list[str] = []
    for key in keys:
        old, build, lock = f"aligned/.old-{key}", f"aligned/.build-{key}", f"aligned/.lock-{key}"
        name = names.get(key) or _aside_name(fs, old)
        try:
            _take_lock(fs, name or key, lock)
        except StoreError:  # a live build holds it
            continue
        try:
            if name is not None and _interrupted_swap(fs, name):
                _settle_swap(fs, name)
                done.append(old)
            if fs.exists(build):
                fs.rm(build)
                done.append(build)
        finally:
            fs.rm(lock)
    return done


def _aside_name(fs: StoreFS, old: str) -> str | None:
    """The view name an aside copy's description gives (``config.view``, as align writes it)."""
    try:
        view = fs.read_json(f"{old}/{ASIDE_JSON}", "view description").get("config", {}).get("view")
    except (FileNotFoundError, StoreError):
        return None
    return view if isinstance(view, str) and view else None


def open_view(store: Any, name: str) -> AlignedView:
    """The committed view ``name``; an invisible one that an interrupted swap left is settled first
    (``_recover_swap``), so its previous version is back."""
    fs = _fs(store)
    rel = f"aligned/{name}"
    if not fs.exists(f"{rel}/view.json"):
        _recover_swap(fs, name)
    if not fs.exists(f"{rel}/view.json"):
        raise StoreError(f"{fs.url}: no aligned view {name!r} (run `emoflow align` first)")
    attrs = fs.read_json(f"{rel}/view.json", "view description")
    with damaged_as_store_error(fs.path(rel, "clips.parquet"), "view clip table"):
        clips = conform(fs.read_parquet(f"{rel}/clips.parquet"), CLIPS_SCHEMA)  # views older than the class columns
    return AlignedView(fs=fs, name=name, attrs=attrs, clips=clips)
