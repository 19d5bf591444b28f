"""Replacing an aligned view (``store.views.ViewWriter.finish``) and reading one while it is replaced,
locally and on S3 (moto): a move that fails keeps the previous view, a process killed between any two
file operations of the swap leaves a whole view (the old or the new, never a mix) that the next open
or build settles, and a reader whose view was rebuilt since it opened it is refused, not mixed."""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from store.errors import StoreError
from store.fs import StoreFS
from store.views import ViewWriter, open_view, vacuum_views, write_view
from tests.helpers.s3 import S3Server

N = 3


def _arrays(value: float) -> dict[str, np.ndarray]:
    return {
        "audio/values": np.full((N, 4, 2), value, dtype=np.float32),
        "audio/lengths": np.full(N, 4, dtype=np.int32),
        "audio/present": np.ones(N, dtype=bool),
        "audio/mean": np.full(2, value, dtype=np.float32),
        "audio/std": np.ones(2, dtype=np.float32),
    }


def _clips(value: float) -> pa.Table:
    return pa.table({"row": list(range(N)), "clip_id": [f"c{i}" for i in range(N)], "label": [value] * N,
                     "split": ["train"] * N})


def _attrs(value: float) -> dict[str, Any]:
    return {"fingerprint": f"fp-{value}", "modalities": {"audio": {"dim": 2}}, "config": {"view": "v"}}


def _write(fs: StoreFS, value: float) -> None:
    write_view(fs, "v", _arrays(value), _clips(value), _attrs(value))


def _whole(fs: StoreFS) -> float:
    """The value of the build that view 'v' shows, after checking every array, the clip table and the
    group's build id belong to that one build."""
    view = open_view(fs, "v")
    value = float(view.fingerprint.removeprefix("fp-"))
    for key, data in _arrays(value).items():
        np.testing.assert_array_equal(view.read(key), data, err_msg=key)
    assert view.clips.column("label").to_pylist() == [value] * N
    assert view.build_id is not None and view.group().attrs["build_id"] == view.build_id
    return value


def _leftovers(fs: StoreFS) -> list[str]:
    """What a swap may leave besides the view: build, aside and lock files beside it, any file in it
    that is not the view's own (the old view's renamed description)."""
    own = {"audio", "clips.parquet", "view.json", "zarr.json"}
    return [n for n in fs.ls("aligned") if n != "v"] + [n for n in fs.ls("aligned/v") if n not in own]


def _age_lock(fs: StoreFS, lock: str) -> None:
    """The build that holds ``lock`` died long ago: the lock is stale."""
    fs.write_bytes_atomic(lock, b'{"host": "gone", "pid": 1, "time": 0}')


@pytest.fixture(params=["local", "s3"])
def store_fs(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFS:
    """An empty store's filesystem, a local folder or an S3 prefix (moto)."""
    if request.param == "local":
        return StoreFS(tmp_path / "store")
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    s3: S3Server = request.getfixturevalue("s3")
    return StoreFS(s3.url(f"swap-{tmp_path.name}"))  # unique, and no glob characters such as [ ]


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    from tests.helpers.s3 import s3_server

    with s3_server() as server:
        yield server


# -- a move that fails -------------------------------------------------------------------------------
def _fail_moves_once(m: pytest.MonkeyPatch, fs: StoreFS, *sources: str) -> None:
    """The first move of each folder named by ``sources`` (substrings of its path) fails with a full
    disk: locally the rename, on S3 the copy, which gets half of its files across first."""
    op = "mv" if fs.is_local else "copy"
    real: Callable[..., Any] = getattr(fs.fs, op)
    pending = set(sources)

    def failing(path1: Any, path2: Any, *args: Any, **kwargs: Any) -> Any:
        hit = next((s for s in pending if s in str(path1)), None)
        if hit is None:
            return real(path1, path2, *args, **kwargs)
        pending.discard(hit)
        if isinstance(path1, list) and len(path1) > 1:
            real(path1[: len(path1) // 2], path2[: len(path2) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    m.setattr(fs.fs, op, failing)


def test_a_failed_move_of_the_new_build_keeps_the_previous_view_whole_and_visible(
    store_fs: StoreFS, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _write(store_fs, 1.0)
    with monkeypatch.context() as m:
        _fail_moves_once(m, store_fs, ".build-")
        with pytest.raises(StoreError, match=r"view 'v' in .*: the new build could not replace the view "
                                             r"\(No space left on device\); the view is left as it was"):
            _write(store_fs, 2.0)
    assert _whole(store_fs) == 1.0 and _leftovers(store_fs) == []
    _write(store_fs, 2.0)  # and the next build goes through
    assert _whole(store_fs) == 2.0 and _leftovers(store_fs) == []


def test_a_failed_first_build_leaves_no_view_and_nothing_behind(
    store_fs: StoreFS, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as m:
        _fail_moves_once(m, store_fs, ".build-")
        with pytest.raises(StoreError, match="could not replace the view"):
            _write(store_fs, 1.0)
    with pytest.raises(StoreError, match="no aligned view 'v'"):
        open_view(store_fs, "v")
    assert store_fs.ls("aligned") == []


def test_when_putting_the_previous_view_back_fails_too_the_next_open_restores_it(
    store_fs: StoreFS, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _write(store_fs, 1.0)
    with monkeypatch.context() as m:
        _fail_moves_once(m, store_fs, ".build-", ".old-")
        with pytest.raises(StoreError, match=r"could not replace the view \(No space left on device\); .*cannot "
                                             r"restore the previous view from .*\.old-.*the next build or open"):
            _write(store_fs, 2.0)
    assert _whole(store_fs) == 1.0 and _leftovers(store_fs) == []


# -- a process killed mid-swap -------------------------------------------------------------------------
class _Killed(BaseException):
    """The process dies here: no ``except`` clause, ``finally`` cleanup or ``__exit__`` of the
    builder runs its course (the test calls ``finish`` outside ``with``)."""


def _die_at(m: pytest.MonkeyPatch, fs: StoreFS, k: int, half: bool, calls: list[tuple[str, bool]]) -> None:
    """From now on the process dies at the ``k``-th change to ``fs``'s files (``mv``, ``copy``,
    ``rm``, ``pipe_file``, counted from 0; -1: never): just after it, or with ``half`` in the middle
    of a copy of several files or a removal of a folder (half of the files done). ``calls`` gets each
    change and whether it has such a middle (a local rename has none)."""
    for op in ("mv", "copy", "rm", "pipe_file"):
        real: Callable[..., Any] = getattr(fs.fs, op)

        def dying(*args: Any, _op: str = op, _real: Callable[..., Any] = real, **kwargs: Any) -> Any:
            i = len(calls)
            copies = _op == "copy" and isinstance(args[0], list) and len(args[0]) > 1
            removes = _op == "rm" and isinstance(args[0], str) and fs.fs.isdir(args[0])
            calls.append((f"{_op} {args[0]}", copies or removes))
            if i != k:
                return _real(*args, **kwargs)
            if not half:
                _real(*args, **kwargs)
            elif copies:
                _real(args[0][: len(args[0]) // 2], args[1][: len(args[1]) // 2])
            elif removes:
                files = sorted(fs.fs.find(args[0]))
                _real(files[: len(files) // 2])
            raise _Killed

        m.setattr(fs.fs, op, dying)


def _killed_swap(fs: StoreFS, m: pytest.MonkeyPatch, k: int, half: bool) -> tuple[ViewWriter, list[tuple[str, bool]]]:
    """View 'v' holds build 1.0; a build of 2.0 is swapped in by a process that dies at change ``k``."""
    _write(fs, 1.0)
    writer = ViewWriter(fs, "v", N)
    for key, data in _arrays(2.0).items():
        writer.write(key, data)
    calls: list[tuple[str, bool]] = []
    with m.context() as mm:
        _die_at(mm, fs, k, half, calls)
        if k < 0:
            writer.finish(_clips(2.0), _attrs(2.0))
        else:
            with pytest.raises(_Killed):
                writer.finish(_clips(2.0), _attrs(2.0))
    return writer, calls


@pytest.mark.parametrize("store_fs", ["local", pytest.param("s3", marks=pytest.mark.slow)], indirect=True)
def test_a_swap_killed_between_any_two_file_operations_leaves_one_whole_view_that_the_next_open_settles(
    store_fs: StoreFS, monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = store_fs.url
    _, calls = _killed_swap(StoreFS(f"{base}/dry"), monkeypatch, -1, False)
    assert calls
    seen = set()
    for k, (call, has_middle) in enumerate(calls):
        for half in (False, True)[: 1 + has_middle]:
            fs = StoreFS(f"{base}/k{k}-{half}")
            writer, _ = _killed_swap(fs, monkeypatch, k, half)
            step = f"killed {'in' if half else 'after'} {call}"
            if fs.exists("aligned/v/view.json"):  # visible: whole, the old build or the new
                seen.add(("visible", _whole(fs)))
            else:  # invisible while the killed build's lock is fresh; then the previous view is back
                with pytest.raises(StoreError, match="is being built by another run"):
                    open_view(fs, "v")
                _age_lock(fs, writer.lock)
                assert _whole(fs) == 1.0, step
                assert _leftovers(fs) in ([], [writer.build.split("/")[1]]), step  # the next build drops that
                seen.add(("restored", 1.0))
            if fs.exists(writer.lock):
                _age_lock(fs, writer.lock)
            _write(fs, 3.0)
            assert _whole(fs) == 3.0 and _leftovers(fs) == [], step
    assert {("visible", 2.0), ("restored", 1.0)} <= seen  # both outcomes happen (S3: also the old still visible)


def test_a_swap_killed_with_the_old_view_moved_aside_is_settled_by_the_next_build(
    store_fs: StoreFS, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, calls = _killed_swap(StoreFS(f"{store_fs.url}/dry"), monkeypatch, -1, False)
    aside = next(i for i, (c, _) in enumerate(calls) if c.startswith(("mv ", "copy ")) and ".build-" in c)
    writer, _ = _killed_swap(store_fs, monkeypatch, aside, True)
    assert not store_fs.exists("aligned/v/view.json")
    _age_lock(store_fs, writer.lock)
    with ViewWriter(store_fs, "v", N) as again:  # settles the killed swap before building
        assert _whole(store_fs) == 1.0 and _leftovers(store_fs) == [again.build.split("/")[1], again.lock.split("/")[1]]
        for key, data in _arrays(3.0).items():
            again.write(key, data)
        again.finish(_clips(3.0), _attrs(3.0))
    assert _whole(store_fs) == 3.0 and _leftovers(store_fs) == []


# -- store vacuum ---------------------------------------------------------------------------------------
def test_vacuum_leaves_a_live_build_alone_and_removes_the_folder_of_a_dead_one(store_fs: StoreFS) -> None:
    _write(store_fs, 1.0)
    writer = ViewWriter(store_fs, "v", N)  # its process dies here: no finish, no __exit__
    for key, data in _arrays(2.0).items():
        writer.write(key, data)
    assert vacuum_views(store_fs) == [] and store_fs.exists(writer.build)  # a fresh lock: it may still run
    _age_lock(store_fs, writer.lock)
    assert vacuum_views(store_fs) == [writer.build]
    assert _leftovers(store_fs) == [] and _whole(store_fs) == 1.0


@pytest.mark.parametrize("store_fs", ["local"], indirect=True)
def test_vacuum_clears_what_a_swap_killed_at_any_step_left_and_one_whole_view_stays(
    store_fs: StoreFS, monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = store_fs.url
    _, calls = _killed_swap(StoreFS(f"{base}/dry"), monkeypatch, -1, False)
    for k, (call, _) in enumerate(calls):
        fs = StoreFS(f"{base}/k{k}")
        writer, _ = _killed_swap(fs, monkeypatch, k, False)
        assert vacuum_views(fs) == [], call  # the killed build's lock is fresh: as if it still ran
        _age_lock(fs, writer.lock)
        vacuum_views(fs)
        assert _leftovers(fs) == [], f"killed after {call}"
        assert _whole(fs) in (1.0, 2.0), f"killed after {call}"


# -- reading while a view is rebuilt -------------------------------------------------------------------
def test_each_build_has_its_own_id_in_view_json_and_in_the_group(store_fs: StoreFS) -> None:
    _write(store_fs, 1.0)
    first = open_view(store_fs, "v")
    _write(store_fs, 1.0)
    second = open_view(store_fs, "v")
    assert first.build_id and second.build_id and first.build_id != second.build_id
    assert second.group().attrs["build_id"] == second.build_id


def test_a_view_rebuilt_after_it_was_opened_refuses_its_arrays_instead_of_mixing(store_fs: StoreFS) -> None:
    _write(store_fs, 1.0)
    view = open_view(store_fs, "v")
    _write(store_fs, 2.0)  # another process rebuilds the view between open and read
    rebuilt = r"view 'v' in .* was rebuilt while this run was reading it \(build (\w+) → (\w+)\); rerun"
    with pytest.raises(StoreError, match=rebuilt) as refused:
        view.read("audio/values")
    ids = re.search(rebuilt, str(refused.value))
    assert ids is not None and ids.groups() == (view.build_id, open_view(store_fs, "v").build_id)
    for read in (view.group, view.check_unchanged):
        with pytest.raises(StoreError, match=rebuilt):
            read()


def test_a_view_whose_folder_is_gone_mid_swap_is_a_store_error_not_a_zarr_one(store_fs: StoreFS) -> None:
    _write(store_fs, 1.0)
    view = open_view(store_fs, "v")
    store_fs.rm("aligned/v")  # what a reader sees between moving the old view aside and the new one in
    with pytest.raises(StoreError, match=r"view 'v' in .*: its arrays are gone \(rebuilt or removed"):
        view.read("audio/values")


def _strip_build_id(fs: StoreFS) -> None:
    """Make view 'v' one written before build ids: none in ``view.json`` nor in the group."""
    attrs = fs.read_json("aligned/v/view.json", "view")
    del attrs["build_id"]
    fs.write_bytes_atomic("aligned/v/view.json", json.dumps(attrs).encode())
    del fs.open_group("aligned/v", mode="r+").attrs["build_id"]


def test_a_view_written_before_build_ids_opens_and_reads_and_a_rebuild_of_it_is_still_caught(
    store_fs: StoreFS,
) -> None:
    _write(store_fs, 1.0)
    _strip_build_id(store_fs)
    view = open_view(store_fs, "v")
    assert view.build_id is None
    np.testing.assert_array_equal(view.read("audio/values"), _arrays(1.0)["audio/values"])
    _write(store_fs, 2.0)  # the new build has an id, which the old one had not
    with pytest.raises(StoreError, match=r"was rebuilt while this run was reading it \(build without id → "):
        view.read("audio/values")


def test_checking_the_build_costs_no_request_beyond_opening_the_group(s3: S3Server) -> None:
    pytest.importorskip("s3fs")
    fs = StoreFS(s3.url("swap-cost"))
    _write(fs, 1.0)
    view = open_view(fs, "v")
    with s3.counting() as plain:
        fs.open_group("aligned/v")
    with s3.counting() as checked:
        view.group()
    assert checked.by_kind == plain.by_kind and checked.total >= 1
