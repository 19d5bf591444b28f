"""Rendering a planned dataset and writing it in the three layouts ingest reads."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from corpora.synth.encode import Timeline, encode_media
from corpora.synth.plan import plan_clips, word_times
from corpora.synth.signals import (
    AUDIO_SAMPLE_RATE,
    FRAME_SIZE,
    GeneratedDataset,
    Layout,
    SynthClip,
    make_scene,
    render_audio,
    rgb_to_yuv420p,
    scene_yuv,
)
from features.clips import Word

_FILLER_GREY = 128  # mosi_gap filler frames


# --------------------------------------------------------------------------------------------
# Layout writers
# --------------------------------------------------------------------------------------------


def _words_json(words: Sequence[Word]) -> list[dict[str, float | str]]:
    return [{"word": w.word, "start": w.start, "end": w.end} for w in words]


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _fmt(x: float) -> str:
    """Shortest round-tripping float text, so CSVs are stable and exact."""
    return repr(float(x))


def _annotation(label: float) -> str:
    return "Positive" if label > 0 else "Negative" if label < 0 else "Neutral"


@dataclass(frozen=True)
class RenderedClip:
    """A clip's word timings (seconds from its start), packed yuv420p frames and mono audio."""

    words: tuple[Word, ...]
    yuv: np.ndarray  # [n_frames, H * 3 / 2, W] uint8
    audio: np.ndarray  # [n_samples] float32


def render_clip(
    text: str,
    a: float,
    v: float,
    *,
    n_frames: int,
    fps: int,
    size: tuple[int, int],
    sample_rate: int,
    rng: np.random.Generator,
) -> RenderedClip:
    """Render one planted clip: the single place where components become pixels and samples.

    Why shared: the sample dataset and the long demo video must plant ``t``/``a``/``v`` by exactly
    the same rules, so a model trained on one can score the other. ``rng`` is drawn from in a fixed
    order (word times, scene, audio), which keeps the output byte-identical for a given stream.
    """
    duration = n_frames / fps
    n_samples = int(round(n_frames * sample_rate / fps))
    words = word_times(text, duration, rng)
    yuv = scene_yuv(make_scene(n_frames, fps, v, size, words, rng))
    audio = render_audio(n_samples, a, words, sample_rate=sample_rate, rng=rng)
    return RenderedClip(words, yuv, audio)


def generate_dataset(
    root: str | Path,
    n_clips: int = 24,
    seed: int = 0,
    layout: Layout = "manifest",
    *,
    clips_per_video: int = 3,
    levels: int = 5,
    label_noise: float = 0.05,
    min_seconds: float = 3.0,
    max_seconds: float = 8.0,
    fps_range: tuple[int, int] = (10, 25),
    size: tuple[int, int] = FRAME_SIZE,
    sample_rate: int = AUDIO_SAMPLE_RATE,
    mosi_gap: float = 0.0,
) -> GeneratedDataset:
    """Write ``n_clips`` labelled clips under ``root`` in one of the layouts ingest reads.

    Everything is a function of ``seed`` (same seed, same tables and the same media bytes) and the
    clip contents do not depend on ``layout``. ``fps`` is drawn per video (a MOSI video has one frame
    rate), so it varies across videos. ``mosi_gap`` inserts that many seconds of neutral filler
    (grey frames, silence) before each segment of a ``mosi`` video, like the unlabelled parts of
    real MOSI videos. Returns what was written, including each clip's planted components.
    """
    if n_clips < 1:
        raise ValueError("n_clips must be >= 1")
    if layout not in ("manifest", "mmsa", "mosi"):
        raise ValueError(f"unknown layout {layout!r}; expected 'manifest', 'mmsa' or 'mosi'")
    if not (0 < min_seconds <= max_seconds):
        raise ValueError("need 0 < min_seconds <= max_seconds")
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"size must have an even width and height (H.264 4:2:0), got {size}")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    plans, n_videos = plan_clips(n_clips, seed, levels, label_noise, clips_per_video)

    rng = np.random.default_rng([seed, 0xF95])
    video_fps = [int(rng.integers(fps_range[0], fps_range[1] + 1)) for _ in range(n_videos)]
    video_ids = [f"v{i + 1:03d}" for i in range(n_videos)]

    # Per-clip timing, words and media, each from its own stream seeded by (seed, index).
    clips: list[SynthClip] = []
    yuv_of: dict[int, np.ndarray] = {}
    audio_of: dict[int, np.ndarray] = {}
    for p in sorted(plans, key=lambda p: (p.video, p.local)):
        crng = np.random.default_rng([seed, 0xC11, p.index])
        fps = video_fps[p.video]
        n_frames = max(1, int(round(float(crng.uniform(min_seconds, max_seconds)) * fps)))
        duration = n_frames / fps
        n_samples = int(round(n_frames * sample_rate / fps))
        r = render_clip(p.text, p.a, p.v, n_frames=n_frames, fps=fps, size=size, sample_rate=sample_rate, rng=crng)
        words = r.words
        yuv_of[p.index], audio_of[p.index] = r.yuv, r.audio
        vid = video_ids[p.video]
        local = f"{p.local + 1:04d}"
        clips.append(
            SynthClip(
                clip_id=f"{vid}_{local}",
                video_id=vid,
                local_id=local,
                index=p.index,
                split=p.split,
                t=p.t,
                a=p.a,
                v=p.v,
                label=p.label,
                text=p.text,
                words=words,
                fps=fps,
                n_frames=n_frames,
                n_samples=n_samples,
                duration=duration,
                media=root,  # filled in by the layout writer
            )
        )

    writer = {"manifest": _write_manifest, "mmsa": _write_mmsa, "mosi": _write_mosi}[layout]
    clips, manifest, files = writer(root, clips, yuv_of, audio_of, sample_rate, mosi_gap)
    return GeneratedDataset(
        root=root, layout=layout, seed=seed, manifest=manifest, clips=tuple(clips), files=tuple(files)
    )


def _write_manifest(
    root: Path,
    clips: list[SynthClip],
    yuv_of: dict[int, np.ndarray],
    audio_of: dict[int, np.ndarray],
    sample_rate: int,
    _gap: float,
) -> tuple[list[SynthClip], Path, list[Path]]:
    """``manifest.csv`` + ``manifest.jsonl`` (same rows) + ``media/<clip_id>.mp4``."""
    out: list[SynthClip] = []
    files: list[Path] = []
    rows: list[list[object]] = []
    jsonl: list[str] = []
    for c in sorted(clips, key=lambda c: c.clip_id):
        rel = f"media/{c.clip_id}.mp4"
        path = root / rel
        encode_media(path, yuv=yuv_of[c.index], fps=c.fps, audio=audio_of[c.index], sample_rate=sample_rate)
        files.append(path)
        out.append(replace(c, media=path))
        words = _words_json(c.words)
        rows.append([c.clip_id, rel, "", "", c.text, json.dumps(words), _fmt(c.label), c.split])
        record = {
            "clip_id": c.clip_id,
            "media": rel,
            "start": None,
            "end": None,
            "text": c.text,
            "words": words,
            "label": c.label,
            "split": c.split,
        }
        jsonl.append(json.dumps(record))
    header = ("clip_id", "media", "start", "end", "text", "words", "label", "split")
    manifest = _write_csv(root / "manifest.csv", header, rows)
    (root / "manifest.jsonl").write_text("\n".join(jsonl) + "\n", encoding="utf-8")
    files += [manifest, root / "manifest.jsonl"]
    return out, manifest, files


def _write_mmsa(
    root: Path,
    clips: list[SynthClip],
    yuv_of: dict[int, np.ndarray],
    audio_of: dict[int, np.ndarray],
    sample_rate: int,
    _gap: float,
) -> tuple[list[SynthClip], Path, list[Path]]:
    """MMSA: ``label.csv`` + ``Raw/<video_id>/<clip_id>.mp4`` with ``clip_id`` like ``0001``."""
    out: list[SynthClip] = []
    files: list[Path] = []
    rows: list[list[object]] = []
    for c in sorted(clips, key=lambda c: c.clip_id):
        path = root / "Raw" / c.video_id / f"{c.local_id}.mp4"
        encode_media(path, yuv=yuv_of[c.index], fps=c.fps, audio=audio_of[c.index], sample_rate=sample_rate)
        files.append(path)
        out.append(replace(c, media=path))
        lt, la, lv = c.label_tav
        rows.append(
            [c.video_id, c.local_id, c.text, _fmt(c.label), _fmt(lt), _fmt(la), _fmt(lv),
             _annotation(c.label), c.split]
        )  # fmt: skip
    header = ("video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V", "annotation", "mode")
    manifest = _write_csv(root / "label.csv", header, rows)
    files.append(manifest)
    return out, manifest, files


def _write_mosi(
    root: Path,
    clips: list[SynthClip],
    yuv_of: dict[int, np.ndarray],
    audio_of: dict[int, np.ndarray],
    sample_rate: int,
    gap: float,
) -> tuple[list[SynthClip], Path, list[Path]]:
    """CMU-MOSI style: long videos of back-to-back segments, windows in ``segments.csv``."""
    out: list[SynthClip] = []
    files: list[Path] = []
    seg_rows: list[list[object]] = []
    fold_rows: list[list[object]] = []
    by_video: dict[str, list[SynthClip]] = {}
    for c in sorted(clips, key=lambda c: c.clip_id):
        by_video.setdefault(c.video_id, []).append(c)
    for vid, segs in by_video.items():
        timeline = Timeline(segs[0].fps, sample_rate)
        transcript: list[str] = []
        words_json: dict[str, list[dict[str, float | str]]] = {}
        for c in segs:
            if gap > 0:
                g_frames = int(round(gap * c.fps))
                height, width = yuv_of[c.index].shape[1] * 2 // 3, yuv_of[c.index].shape[2]
                grey = np.full((1, height, width, 3), _FILLER_GREY, np.uint8)
                timeline.append(np.repeat(rgb_to_yuv420p(grey), g_frames, axis=0), np.zeros(0, np.float32))
            start, end = timeline.append(yuv_of[c.index], audio_of[c.index])
            seg_rows.append([vid, c.local_id, _fmt(round(start, 6)), _fmt(round(end, 6)), _fmt(c.label)])
            transcript.append(f"{c.local_id}_DELIM_{c.text}")
            words_json[c.local_id] = _words_json(c.words)
            out.append(replace(c, start=round(start, 6), end=round(end, 6)))
        path = root / "Video" / "Full" / f"{vid}.mp4"
        timeline.encode(path)
        tpath = root / "Transcript" / "Segmented" / f"{vid}.annotprocessed"
        tpath.parent.mkdir(parents=True, exist_ok=True)
        tpath.write_text("\n".join(transcript) + "\n", encoding="utf-8")
        wpath = root / "Transcript" / "Words" / f"{vid}.json"
        wpath.parent.mkdir(parents=True, exist_ok=True)
        wpath.write_text(json.dumps(words_json, indent=1) + "\n", encoding="utf-8")
        files += [path, tpath, wpath]
        fold_rows.append([vid, segs[0].split])
        out = [replace(c, media=path) if c.video_id == vid else c for c in out]
    manifest = _write_csv(root / "segments.csv", ("video_id", "segment_id", "start", "end", "label"), seg_rows)
    folds = _write_csv(root / "folds.csv", ("video_id", "split"), fold_rows)
    files += [manifest, folds]
    return out, manifest, files
