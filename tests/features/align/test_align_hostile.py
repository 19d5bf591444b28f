"""Alignment under hostile but possible inputs: NaN/inf feature rows, a damaged set whose clips
have another dim, an infinite window, a rebuild that fails, and two builds of one view at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from features.align import AlignConfig, align_view
from features.extractors.base import FeatureResult
from store import FeatureStore, open_view, schema
from store.errors import StoreError
from store.views import ViewWriter

TIMES = np.stack([np.arange(20) * 0.1, np.arange(20) * 0.1 + 0.1], axis=1)
VALUES = np.arange(40, dtype=np.float32).reshape(20, 2)


def _store(root: Path, feats: dict[str, FeatureResult], dim: int = 2) -> FeatureStore:
    """Train clips of 2 s with an audio set of ``feats`` (one commit per clip, so dims may differ)."""
    st = FeatureStore.open(root, create=True)
    st.write_clips(pa.Table.from_pylist(
        [{"clip_id": c, "media_fingerprint": "m" * 64, "clip_fingerprint": f"{c}-fp", "duration": 2.0,
          "text": "a b c d", "label": 0.5, "split": "train"} for c in feats], schema=schema.CLIPS))
    identity = {"name": "audio.mfcc", "test": 1}
    fset = st.ensure_feature_set("audio.mfcc-test", {"modality": "audio", "dim": dim, "extractor": "audio.mfcc",
                                                     "identity": identity, "created": "2026-01-01"})
    clips, digest = st.clips_with_digest()
    fps = dict(zip(feats, st.clip_fingerprints("audio.mfcc-test", "audio", identity, clips, digest)))
    for clip_id, feat in feats.items():
        fset.commit([(clip_id, fps[clip_id], feat, 2.0)])
    return st


def _no_build_files(st: FeatureStore) -> bool:
    """Nothing of a build is left under aligned/: no build folder, no lock."""
    return not [n for n in st.fs.ls("aligned") if n.startswith(".")]


def _arrays(st: FeatureStore, view: str) -> dict[str, np.ndarray]:
    v = open_view(st, view)
    return {k: v.read(f"audio/{k}") for k in ("values", "mask", "lengths", "present", "mean")}


@pytest.mark.parametrize("grid", ["word", "window", "none"])
def test_nan_and_inf_rows_are_left_out_and_never_reach_the_view(tmp_path: Path, grid: str) -> None:
    nan, inf, nan_time = VALUES.copy(), VALUES.copy(), TIMES.copy()
    nan[3, 0], inf[5, 1], nan_time[2, 0] = np.nan, -np.inf, np.nan
    all_nan = np.full_like(VALUES, np.nan)
    st = _store(tmp_path, {"ok": FeatureResult(VALUES, TIMES), "nan": FeatureResult(nan, TIMES),
                           "inf": FeatureResult(inf, TIMES), "nan_time": FeatureResult(VALUES, nan_time),
                           "all_nan": FeatureResult(all_nan, TIMES)})
    for normalize in (False, True):
        name = f"{grid}-{normalize}"
        align_view(st, AlignConfig(view=name, grid=grid, normalize=normalize, max_len=40))
        a = _arrays(st, name)
        assert np.isfinite(a["values"]).all() and np.isfinite(a["mean"]).all()
        assert a["present"].tolist() == [True, True, True, True, False]  # no finite row: absent
        attrs = open_view(st, name).attrs["modalities"]["audio"]
        assert attrs["nonfinite_rows"] == 3 + 20 and attrs["no_signal_clips"] == 1
    # the finite rows of a clip pool as without the bad row: row 3 left out of the first window
    raw = _arrays(st, f"{grid}-False")
    if grid == "none":
        assert raw["lengths"][1] == 19
        np.testing.assert_array_equal(raw["values"][1, :19], np.delete(VALUES, 3, axis=0))
    if grid == "window":
        np.testing.assert_allclose(raw["values"][1, 0], np.delete(VALUES[:5], 3, axis=0).mean(axis=0))


def test_a_clip_whose_rows_have_another_dim_is_named_not_a_broadcast_error(tmp_path: Path) -> None:
    st = _store(tmp_path, {"a": FeatureResult(VALUES, TIMES), "b": FeatureResult(np.zeros((20, 3)), TIMES)})
    for grid in ("window", "none"):
        with pytest.raises(StoreError, match=r"feature set 'audio.mfcc-test': clip 'b' has rows of shape \(3,\), "
                                             r"the set declares dim 2; the set is damaged"):
            align_view(st, AlignConfig(view="damaged", grid=grid))


@pytest.mark.parametrize("field", ["window", "hop"])
def test_an_infinite_window_or_hop_is_a_config_error(field: str) -> None:
    with pytest.raises(ValidationError, match="finite number"):
        AlignConfig(grid="window", **{field: float("inf")})


def test_a_failed_rebuild_keeps_the_previous_view(tmp_path: Path) -> None:
    st = _store(tmp_path, {"a": FeatureResult(VALUES, TIMES), "b": FeatureResult(VALUES, TIMES)})
    built = align_view(st, AlignConfig(view="v", grid="window"))
    before = _arrays(st, "v")
    fset = st.feature_set("audio.mfcc-test")  # a later commit damages the set: the rebuild fails
    fset.commit([("b", fset.read("b").fingerprint, FeatureResult(np.zeros((20, 3)), TIMES), 2.0)])
    with pytest.raises(StoreError, match="damaged"):
        align_view(st, AlignConfig(view="v", grid="window", window=1.0))
    view = open_view(st, "v")
    assert view.fingerprint == built.fingerprint and view.attrs["config"]["window"] == 0.5
    for k, arr in _arrays(st, "v").items():
        np.testing.assert_array_equal(arr, before[k], err_msg=k)
    assert st.view_names() == ["v"] and _no_build_files(st)


def test_a_second_build_of_the_same_view_at_once_is_refused_not_mixed(tmp_path: Path) -> None:
    st = _store(tmp_path, {"a": FeatureResult(VALUES, TIMES), "b": FeatureResult(VALUES, TIMES)})
    align_view(st, AlignConfig(view="v", grid="window"))
    with ViewWriter(st, "v", 2):  # another run is building view 'v' (a writer holds it mid-build)
        with pytest.raises(StoreError, match=r"view 'v' .* is being built by another run .* delete .*\.lock-"):
            align_view(st, AlignConfig(view="v", grid="window", window=1.0))
        assert open_view(st, "v").attrs["config"]["window"] == 0.5  # the first view, whole
        align_view(st, AlignConfig(view="other", grid="window", window=1.0))  # other names are not held
    assert align_view(st, AlignConfig(view="v", grid="window", window=1.0)).changed  # released
    assert open_view(st, "v").attrs["config"]["window"] == 1.0


def test_a_lock_left_by_a_killed_build_is_broken_once_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import store.views as views

    st = _store(tmp_path, {"a": FeatureResult(VALUES, TIMES)})
    killed = ViewWriter(st, "v", 1)  # a build that never finishes: its lock and folder stay, dated long ago
    st.fs.write_bytes_atomic(killed.lock, b'{"host": "gone", "pid": 1, "time": 0}')
    monkeypatch.setattr(views, "VIEW_LOCK_STALE_S", 60.0)
    assert align_view(st, AlignConfig(view="v")).changed
    assert st.view_names() == ["v"] and _no_build_files(st)
