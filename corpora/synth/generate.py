"""Rendering a planned dataset and writing it in the three layouts ingest reads."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from corpora.synth.encode import encode_media
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
        words = word_times(p.text, duration, crng)
        yuv_of[p.index] = scene_yuv(make_scene(n_frames, fps, p.v, size, words, crng))
        audio_of[p.index] = render_audio(n_samples, p.a, words, sample_rate=sample_rate, rng=crng)
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
        fps = segs[0].fps
        frame_parts: list[np.ndarray] = []
        audio_parts: list[np.ndarray] = []
        cum_frames = 0
        cum_samples = 0
        transcript: list[str] = []
        words_json: dict[str, list[dict[str, float | str]]] = {}
        for c in segs:
            if gap > 0:
                g_frames = int(round(gap * fps))
                height, width = yuv_of[c.index].shape[1] * 2 // 3, yuv_of[c.index].shape[2]
                grey = np.full((1, height, width, 3), _FILLER_GREY, np.uint8)
                frame_parts.append(np.repeat(rgb_to_yuv420p(grey), g_frames, axis=0))
                cum_frames += g_frames
                g_end = int(round(cum_frames * sample_rate / fps))
                audio_parts.append(np.zeros(g_end - cum_samples, np.float32))
                cum_samples = g_end
            start = cum_frames / fps
            frame_parts.append(yuv_of[c.index])
            cum_frames += c.n_frames
            end = cum_frames / fps
            # keep audio on the video's frame grid: segment k ends at round(frames * sr / fps)
            a_end = int(round(cum_frames * sample_rate / fps))
            audio_parts.append(_fit(audio_of[c.index], a_end - cum_samples))
            cum_samples = a_end
            seg_rows.append([vid, c.local_id, _fmt(round(start, 6)), _fmt(round(end, 6)), _fmt(c.label)])
            transcript.append(f"{c.local_id}_DELIM_{c.text}")
            words_json[c.local_id] = _words_json(c.words)
            out.append(replace(c, start=round(start, 6), end=round(end, 6)))
        path = root / "Video" / "Full" / f"{vid}.mp4"
        encode_media(
            path,
            yuv=np.concatenate(frame_parts),
            fps=fps,
            audio=np.concatenate(audio_parts),
            sample_rate=sample_rate,
        )
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


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Pad with zeros or cut ``x`` to exactly ``n`` samples."""
    if len(x) >= n:
        return x[:n]
    return np.concatenate([x, np.zeros(n - len(x), x.dtype)])
