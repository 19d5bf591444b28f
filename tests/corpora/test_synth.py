"""The demo-data generator: deterministic, real decodable media, and a label planted in every modality."""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

import av
import decord
import numpy as np
import pytest

from corpora.synth import (
    AUDIO_SAMPLE_RATE,
    FRAME_SIZE,
    GeneratedDataset,
    SynthClip,
    generate_dataset,
    pitch_hz,
    text_polarity,
    truncate_file,
    write_clip,
)


@pytest.fixture(scope="module")
def manifest_ds(tmp_path_factory: pytest.TempPathFactory) -> GeneratedDataset:
    return generate_dataset(tmp_path_factory.mktemp("synth-manifest"), n_clips=24, seed=0)


@pytest.fixture(scope="module")
def mmsa_ds(tmp_path_factory: pytest.TempPathFactory) -> GeneratedDataset:
    return generate_dataset(tmp_path_factory.mktemp("synth-mmsa"), n_clips=9, seed=1, layout="mmsa")


@pytest.fixture(scope="module")
def mosi_ds(tmp_path_factory: pytest.TempPathFactory) -> GeneratedDataset:
    return generate_dataset(tmp_path_factory.mktemp("synth-mosi"), n_clips=9, seed=2, layout="mosi")


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:  # csv keeps ids as text ("0001")
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _decode_rgb(clip: SynthClip) -> np.ndarray:
    """Frames of the clip's window, decoded with decord (what the vision extractor uses)."""
    vr = decord.VideoReader(str(clip.media))
    fps = vr.get_avg_fps()
    lo = int(round((clip.start or 0.0) * fps))
    hi = int(round(clip.end * fps)) if clip.end is not None else len(vr)
    return vr.get_batch(list(range(lo, hi))).asnumpy()


def _decode_audio(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as f:
        rate = f.streams.audio[0].rate
        return np.concatenate([fr.to_ndarray()[0] for fr in f.decode(audio=0)]), rate


def _f0(y: np.ndarray, clip: SynthClip, rate: int) -> float:
    """Dominant pitch: peak (60-400 Hz) of the summed magnitude spectra of the spoken words."""
    nfft = 1 << 15
    spec = np.zeros(nfft // 2 + 1)
    offset = clip.start or 0.0
    for w in clip.words:
        seg = y[int((offset + w.start) * rate) : int((offset + w.end) * rate)]
        if len(seg) > 256:
            spec += np.abs(np.fft.rfft(seg * np.hanning(len(seg)), nfft))
    freqs = np.fft.rfftfreq(nfft, 1.0 / rate)
    band = (freqs > 60) & (freqs < 400)
    return float(freqs[band][np.argmax(spec[band])])


# ---------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_tables_and_media_bytes(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", n_clips=4, seed=5)
    b = generate_dataset(tmp_path / "b", n_clips=4, seed=5)
    c = generate_dataset(tmp_path / "c", n_clips=2, seed=6)
    for name in ("manifest.csv", "manifest.jsonl"):
        assert (a.root / name).read_bytes() == (b.root / name).read_bytes()
    assert [x.media.read_bytes() for x in a.clips] == [x.media.read_bytes() for x in b.clips]
    assert [(x.clip_id, x.components, x.label, x.words) for x in a.clips] == [
        (x.clip_id, x.components, x.label, x.words) for x in b.clips
    ]
    assert (a.root / "manifest.csv").read_bytes() != (c.root / "manifest.csv").read_bytes()


def test_clip_content_does_not_depend_on_the_layout(tmp_path: Path) -> None:
    m = generate_dataset(tmp_path / "m", n_clips=3, seed=9, layout="manifest")
    r = generate_dataset(tmp_path / "r", n_clips=3, seed=9, layout="mmsa")
    assert [c.media.read_bytes() for c in m.clips] == [c.media.read_bytes() for c in r.clips]
    assert [c.clip_id for c in m.clips] == [c.clip_id for c in r.clips]


# ---------------------------------------------------------------------------------------------
# media
# ---------------------------------------------------------------------------------------------


def test_every_clip_decodes_with_pyav_and_decord_at_its_fps_size_and_rate(manifest_ds: GeneratedDataset) -> None:
    width, height = FRAME_SIZE
    fps_seen = set()
    for clip in manifest_ds.clips:
        assert 3.0 <= clip.duration <= 8.0 and 10 <= clip.fps <= 25
        assert clip.duration == pytest.approx(clip.n_frames / clip.fps)
        assert clip.media.stat().st_size < 100_000
        fps_seen.add(clip.fps)
        with av.open(str(clip.media)) as f:
            vs, aus = f.streams.video[0], f.streams.audio[0]
            assert (vs.codec_context.name, vs.format.name, vs.width, vs.height) == ("h264", "yuv420p", width, height)
            assert vs.average_rate == clip.fps
            assert (aus.codec_context.name, aus.rate, aus.channels) == ("aac", AUDIO_SAMPLE_RATE, 1)
            assert sum(1 for _ in f.decode(video=0)) == clip.n_frames
        y, _ = _decode_audio(clip.media)
        assert clip.n_samples <= len(y) < clip.n_samples + 1024  # AAC pads its last frame
        vr = decord.VideoReader(str(clip.media))
        assert len(vr) == clip.n_frames and vr.get_avg_fps() == pytest.approx(clip.fps)
        assert vr[0].shape == (height, width, 3)
        ar = decord.AudioReader(str(clip.media), sample_rate=AUDIO_SAMPLE_RATE, mono=True)
        assert ar.shape[0] == 1 and ar.shape[1] == len(y)
    assert len(fps_seen) >= 3  # the frame rate varies across videos


def test_silence_between_words_follows_the_word_timings(manifest_ds: GeneratedDataset) -> None:
    for clip in manifest_ds.clips[:6]:
        y, rate = _decode_audio(clip.media)
        spoken = np.zeros(len(y), bool)
        for w in clip.words:
            spoken[int(w.start * rate) : int(w.end * rate)] = True
        rms_in = np.sqrt(np.mean(y[spoken] ** 2))
        rms_out = np.sqrt(np.mean(y[~spoken] ** 2))
        assert rms_in > 10 * rms_out


# ---------------------------------------------------------------------------------------------
# labels, text, splits
# ---------------------------------------------------------------------------------------------


def test_labels_are_the_clipped_sum_of_the_components(manifest_ds: GeneratedDataset) -> None:
    comps = manifest_ds.components
    assert np.all(np.abs(comps) <= 1.0)
    expected = np.clip(comps.sum(axis=1), -3, 3)
    assert np.all(np.abs(manifest_ds.labels) <= 3.0)
    assert np.max(np.abs(manifest_ds.labels - expected)) < 0.25  # only the small label noise


def test_no_single_modality_explains_the_label_but_all_three_do(manifest_ds: GeneratedDataset) -> None:
    comps, y = manifest_ds.components, manifest_ds.labels

    def r2(x: np.ndarray) -> float:
        design = np.column_stack([x, np.ones(len(y))])
        resid = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
        return 1.0 - resid.var() / y.var()

    assert max(r2(comps[:, [m]]) for m in range(3)) < 0.7
    assert r2(comps) > 0.98
    corr = np.corrcoef(comps.T)
    assert np.max(np.abs(corr[np.triu_indices(3, 1)])) < 0.5  # components drawn independently


def test_text_sentiment_words_carry_t_and_word_timings_cover_the_text(manifest_ds: GeneratedDataset) -> None:
    for clip in manifest_ds.clips:
        assert text_polarity(clip.text) == pytest.approx(clip.t)
        assert 5 <= len(clip.text.split()) <= 14
        assert " ".join(w.word for w in clip.words) == clip.text
        bounds = [(w.start, w.end) for w in clip.words]
        assert all(0 < s < e <= clip.duration for s, e in bounds)
        assert all(e1 <= s2 for (_, e1), (s2, _) in zip(bounds, bounds[1:]))


def test_splits_are_60_20_20_with_both_signs_in_each(manifest_ds: GeneratedDataset) -> None:
    for split, (lo, hi) in {"train": (12, 16), "valid": (3, 7), "test": (3, 7)}.items():
        labels = [c.label for c in manifest_ds.clips if c.split == split]
        assert lo <= len(labels) <= hi
        assert min(labels) < 0 < max(labels)
    videos: dict[str, set[str]] = {}
    for c in manifest_ds.clips:
        videos.setdefault(c.video_id, set()).add(c.split)
    assert all(len(s) == 1 for s in videos.values())  # a video never straddles splits


# ---------------------------------------------------------------------------------------------
# planted signals are measurable from the decoded media
# ---------------------------------------------------------------------------------------------


def test_background_colour_of_decoded_frames_tracks_v(manifest_ds: GeneratedDataset) -> None:
    warmth = []
    for clip in manifest_ds.clips:
        frames = _decode_rgb(clip).astype(np.float64)
        assert frames.std(axis=0).max() > 20  # the moving shape: frames are not constant
        warmth.append(frames[..., 0].mean() - frames[..., 2].mean())  # red minus blue
    v = manifest_ds.components[:, 2]
    assert np.corrcoef(warmth, v)[0, 1] > 0.95


def test_pitch_of_decoded_audio_tracks_a(manifest_ds: GeneratedDataset) -> None:
    f0 = []
    for clip in manifest_ds.clips:
        y, rate = _decode_audio(clip.media)
        f0.append(_f0(y, clip, rate))
        assert f0[-1] == pytest.approx(pitch_hz(clip.a), rel=0.06)
    a = manifest_ds.components[:, 1]
    assert np.corrcoef(np.log2(f0), a)[0, 1] > 0.95


# ---------------------------------------------------------------------------------------------
# layouts
# ---------------------------------------------------------------------------------------------


def test_manifest_layout_csv_and_jsonl_hold_the_same_rows(manifest_ds: GeneratedDataset) -> None:
    root = manifest_ds.root
    assert manifest_ds.manifest == root / "manifest.csv"
    header, rows = _read_csv(root / "manifest.csv")
    assert header == ["clip_id", "media", "start", "end", "text", "words", "label", "split"]
    records = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    by_id = manifest_ds.by_id()
    assert [r["clip_id"] for r in rows] == [r["clip_id"] for r in records] == sorted(by_id)
    for row, rec in zip(rows, records):
        clip = by_id[row["clip_id"]]
        assert row["media"] == rec["media"] == f"media/{clip.clip_id}.mp4"
        assert (root / row["media"]).resolve() == clip.media and clip.media.is_file()
        assert row["start"] == row["end"] == "" and rec["start"] is None and rec["end"] is None
        assert json.loads(row["words"]) == rec["words"]
        assert rec["words"][0] == {"word": clip.words[0].word, "start": clip.words[0].start, "end": clip.words[0].end}
        assert float(row["label"]) == rec["label"] == clip.label
        assert row["text"] == rec["text"] == clip.text and row["split"] == rec["split"] == clip.split


def test_mmsa_layout_label_csv_and_raw_files(mmsa_ds: GeneratedDataset) -> None:
    header, rows = _read_csv(mmsa_ds.root / "label.csv")
    assert mmsa_ds.manifest == mmsa_ds.root / "label.csv"
    assert header == ["video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V", "annotation", "mode"]
    by_id = mmsa_ds.by_id()
    assert len(rows) == 9 and len({r["video_id"] for r in rows}) >= 3
    for row in rows:
        assert len(row["clip_id"]) == 4 and row["clip_id"].isdigit()  # "0001": read as text
        clip = by_id[f"{row['video_id']}_{row['clip_id']}"]
        path = mmsa_ds.root / "Raw" / row["video_id"] / f"{row['clip_id']}.mp4"
        assert path.is_file() and clip.media == path.resolve()
        assert float(row["label"]) == clip.label and row["mode"] == clip.split
        t, a, v = (float(row[k]) for k in ("label_T", "label_A", "label_V"))
        assert (t, a, v) == pytest.approx((3 * clip.t, 3 * clip.a, 3 * clip.v))
        assert row["annotation"] == ("Positive" if clip.label > 0 else "Negative" if clip.label < 0 else "Neutral")
    assert {r["mode"] for r in rows} == {"train", "valid", "test"}


def test_mosi_layout_segments_transcripts_folds_and_words(mosi_ds: GeneratedDataset) -> None:
    root = mosi_ds.root
    seg_header, segs = _read_csv(root / "segments.csv")
    fold_header, folds = _read_csv(root / "folds.csv")
    assert seg_header == ["video_id", "segment_id", "start", "end", "label"]
    assert fold_header == ["video_id", "split"]
    split_of = {r["video_id"]: r["split"] for r in folds}
    assert set(split_of.values()) == {"train", "valid", "test"}
    by_id = mosi_ds.by_id()
    for vid in split_of:
        mine = [r for r in segs if r["video_id"] == vid]
        assert len(mine) >= 2
        ends = [0.0] + [float(r["end"]) for r in mine]
        assert [float(r["start"]) for r in mine] == pytest.approx(ends[:-1], abs=1e-5)  # back to back
        full = root / "Video" / "Full" / f"{vid}.mp4"
        with av.open(str(full)) as f:
            assert float(f.duration / 1e6) == pytest.approx(ends[-1], abs=0.07)
        lines = (root / "Transcript" / "Segmented" / f"{vid}.annotprocessed").read_text().splitlines()
        words = json.loads((root / "Transcript" / "Words" / f"{vid}.json").read_text())
        for row, line in zip(mine, lines, strict=True):
            clip = by_id[f"{vid}_{row['segment_id']}"]
            assert line == f"{row['segment_id']}_DELIM_{clip.text}"
            assert clip.split == split_of[vid] and clip.media == full.resolve()
            assert (clip.start, clip.end) == pytest.approx((float(row["start"]), float(row["end"])))
            assert clip.end - clip.start == pytest.approx(clip.duration, abs=1e-5)
            assert float(row["label"]) == clip.label
            assert words[row["segment_id"]] == [{"word": w.word, "start": w.start, "end": w.end} for w in clip.words]


def test_mosi_segments_keep_their_own_signal_inside_the_long_video(mosi_ds: GeneratedDataset) -> None:
    warmth, f0 = [], []
    for clip in mosi_ds.clips:
        frames = _decode_rgb(clip).astype(np.float64)
        assert len(frames) == clip.n_frames
        warmth.append(frames[..., 0].mean() - frames[..., 2].mean())
        y, rate = _decode_audio(clip.media)
        f0.append(_f0(y, clip, rate))
    comps = mosi_ds.components
    assert np.corrcoef(warmth, comps[:, 2])[0, 1] > 0.95
    assert np.corrcoef(np.log2(f0), comps[:, 1])[0, 1] > 0.95


def test_mosi_gap_puts_unlabelled_filler_before_each_segment(tmp_path: Path) -> None:
    ds = generate_dataset(tmp_path, n_clips=6, seed=4, layout="mosi", mosi_gap=1.0)
    for vid in ds.video_ids:
        segs = sorted((c.start, c.end) for c in ds.clips if c.video_id == vid)
        assert segs[0][0] == pytest.approx(1.0, abs=0.1)
        assert all(s2 - e1 == pytest.approx(1.0, abs=0.1) for (_, e1), (s2, _) in zip(segs, segs[1:]))


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="layout"):
        generate_dataset(tmp_path, layout="lhotse")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, n_clips=0)


# ---------------------------------------------------------------------------------------------
# write_clip: odd files for other tests
# ---------------------------------------------------------------------------------------------


def test_write_clip_makes_audio_only_video_only_and_odd_files(tmp_path: Path) -> None:
    audio_only = write_clip(tmp_path / "a.m4a", seconds=2.0, video=False)
    video_only = write_clip(tmp_path / "v.mp4", seconds=2.0, fps=12, audio=False)
    odd = write_clip(
        tmp_path / "odd.mov", seconds=1.5, fps=Fraction(30000, 1001), size=(96, 64), sample_rate=44100, channels=2
    )
    with av.open(str(audio_only)) as f:
        assert not f.streams.video and f.streams.audio[0].rate == AUDIO_SAMPLE_RATE
    with av.open(str(video_only)) as f:
        assert not f.streams.audio and sum(1 for _ in f.decode(video=0)) == 24
    with av.open(str(odd)) as f:
        vs, aus = f.streams.video[0], f.streams.audio[0]
        assert (vs.width, vs.height, vs.average_rate) == (96, 64, Fraction(30000, 1001))
        assert (aus.rate, aus.channels) == (44100, 2)
    assert len(decord.VideoReader(str(odd))) == 45
    with pytest.raises(ValueError):
        write_clip(tmp_path / "none.mp4", seconds=1.0, audio=False, video=False)
    with pytest.raises(ValueError, match="even"):
        write_clip(tmp_path / "odd_size.mp4", seconds=1.0, size=(161, 120))


def test_write_clip_plants_the_requested_signal(tmp_path: Path) -> None:
    warm = write_clip(tmp_path / "warm.mp4", seconds=2.0, v=1.0, a=1.0)
    cold = write_clip(tmp_path / "cold.mp4", seconds=2.0, v=-1.0, a=-1.0)
    redness = [decord.VideoReader(str(p))[0].asnumpy().astype(float) for p in (warm, cold)]
    assert (redness[0][..., 0] - redness[0][..., 2]).mean() > 100 > (redness[1][..., 0] - redness[1][..., 2]).mean()


def test_truncate_file_cuts_bytes(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "t.mp4", seconds=1.0)
    size = path.stat().st_size
    truncate_file(path, keep=0.3)
    assert path.stat().st_size == int(size * 0.3)


def test_fast_yuv_rendering_equals_converting_the_rgb_frames() -> None:
    from corpora.synth.signals import make_scene, rgb_to_yuv420p, scene_rgb, scene_yuv
    from features.clips import Word

    for k, size in enumerate([(160, 120), (96, 64), (162, 118)]):
        scene = make_scene(60, 15.0, 0.5 - 0.5 * k, size, [Word("so", 0.5, 1.5)], np.random.default_rng(k))
        assert np.array_equal(scene_yuv(scene), rgb_to_yuv420p(scene_rgb(scene)))
