"""Planning a seeded dataset and writing it in the three layouts ingest reads."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from corpora.synth.encode import encode_media
from corpora.synth.signals import (
    AUDIO_SAMPLE_RATE,
    FRAME_SIZE,
    LEXICON,
    GeneratedDataset,
    Layout,
    Split,
    SynthClip,
    make_scene,
    render_audio,
    rgb_to_yuv420p,
    scene_yuv,
)
from features.clips import Word

# Sentence material around the lexicon's slots (neutral clauses score 0).
_NOUNS = ("movie", "film", "story", "plot", "acting", "ending", "soundtrack", "script", "cast")
_VERBS = ("was", "felt", "seemed")
_NEUTRAL_CLAUSES = (
    "it lasted about two hours",
    "it came out last year",
    "i watched it on a friday",
    "it was filmed in canada",
    "i saw it with my brother",
    "it is based on a book",
    "the theater was on main street",
    "there were many people there",
)
_OPENERS = ("", "", "so", "well", "i think", "honestly", "you know", "to be honest", "basically")
_CONNECTORS = ("and", "and", "and also", "while")
_SLOT_SCORES = (-1.0, -0.5, 0.0, 0.5, 1.0)
_FILLER_GREY = 128  # mosi_gap filler frames


# --------------------------------------------------------------------------------------------
# Planning (all randomness happens here, from one seed)
# --------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    index: int
    t: float
    a: float
    v: float
    label: float
    text: str
    split: Split = "train"
    video: int = -1
    local: int = -1


def _sentence(t: float, rng: np.random.Generator) -> str:
    """A 5-14 word opinion whose two clause slots average to ``t`` (quantised to 0.25)."""
    q = round(float(np.clip(t, -1.0, 1.0)) * 4.0) / 4.0
    combos = [
        (s1, s2)
        for s1 in _SLOT_SCORES
        for s2 in _SLOT_SCORES
        if abs((s1 + s2) / 2.0 - q) < 1e-9 and s1 * s2 >= 0.0
    ]
    s1, s2 = combos[int(rng.integers(len(combos)))]
    for _ in range(100):
        clauses: list[str] = []
        nouns = list(rng.permutation(_NOUNS))
        neutrals = list(rng.permutation(_NEUTRAL_CLAUSES))
        for s in (s1, s2):
            if s == 0.0:
                clauses.append(str(neutrals.pop()))
            else:
                adj = LEXICON[s][int(rng.integers(len(LEXICON[s])))]
                verb = _VERBS[int(rng.integers(len(_VERBS)))]
                clauses.append(f"the {nouns.pop()} {verb} {adj}")
        opener = _OPENERS[int(rng.integers(len(_OPENERS)))]
        connector = _CONNECTORS[int(rng.integers(len(_CONNECTORS)))]
        text = " ".join(x for x in (opener, clauses[0], connector, clauses[1]) if x)
        if 5 <= len(text.split()) <= 14:
            return text
    raise RuntimeError("could not build a 5-14 word sentence")  # pragma: no cover


def _balanced(levels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws covering ``levels`` evenly, shuffled: balanced marginals, no chance imbalance."""
    reps = np.tile(levels, math.ceil(n / len(levels)))[:n]
    return rng.permutation(reps)


def _assign_splits(plans: list[_Plan], rng: np.random.Generator) -> None:
    """~60/20/20 split stratified by label sign, so every split sees both signs."""
    pattern: tuple[Split, ...] = ("train", "valid", "test", "train", "train")
    groups = (
        [p for p in plans if p.label < 0],
        [p for p in plans if p.label > 0],
        [p for p in plans if p.label == 0],
    )
    for group in groups:
        for j, idx in enumerate(rng.permutation(len(group))):
            group[int(idx)].split = pattern[j % len(pattern)]


def _assign_videos(plans: list[_Plan], clips_per_video: int, rng: np.random.Generator) -> int:
    """Group clips into videos within one split (MOSI folds split whole videos), signs mixed."""
    videos: list[list[_Plan]] = []
    for split in ("train", "valid", "test"):
        members = [p for p in plans if p.split == split]
        if not members:
            continue
        neg = [p for p in members if p.label < 0]
        pos = [p for p in members if p.label >= 0]
        order = [neg, pos] if len(neg) >= len(pos) else [pos, neg]
        mixed = [x for pair in zip(*order, strict=False) for x in pair]
        rest = order[0][len(order[1]) :]
        mixed += rest
        n_videos = max(1, math.ceil(len(mixed) / clips_per_video))
        # deal round-robin so each video gets alternating signs and sizes differ by at most one
        chunks: list[list[_Plan]] = [[] for _ in range(n_videos)]
        for j, p in enumerate(mixed):
            chunks[j % n_videos].append(p)
        videos.extend(chunks)
    for vid, idx in enumerate(rng.permutation(len(videos))):
        for local, p in enumerate(videos[int(idx)]):
            p.video, p.local = vid, local
    return len(videos)


def _plan(
    n_clips: int, seed: int, levels: int, label_noise: float, clips_per_video: int
) -> tuple[list[_Plan], int]:
    rng = np.random.default_rng([seed, 0x5EED])
    grid = np.linspace(-1.0, 1.0, levels)
    for _attempt in range(1000):
        comps = np.stack([_balanced(grid, n_clips, rng) for _ in range(3)], axis=1)
        noise = rng.normal(0.0, label_noise, n_clips)
        labels = np.round(np.clip(comps.sum(axis=1) + noise, -3.0, 3.0), 3)
        if n_clips < 6 or ((labels < 0).sum() >= 3 and (labels > 0).sum() >= 3):
            break
    plans = [
        _Plan(i, float(t), float(a), float(v), float(lab) + 0.0, _sentence(float(t), rng))
        for i, ((t, a, v), lab) in enumerate(zip(comps, labels, strict=True))
    ]
    _assign_splits(plans, rng)
    n_videos = _assign_videos(plans, clips_per_video, rng)
    return plans, n_videos


def _word_times(text: str, duration: float, rng: np.random.Generator) -> tuple[Word, ...]:
    """Spread words over a speech span inside the clip, longer words longer, short pauses between."""
    tokens = text.split()
    lead = min(float(rng.uniform(0.15, 0.45)), 0.15 * duration)  # caps only bite below 3 s
    tail = min(float(rng.uniform(0.15, 0.45)), 0.15 * duration)
    span = duration - lead - tail
    pause = min(0.12, 0.25 * span / len(tokens))
    weights = np.array([len(w) + 2.0 for w in tokens])
    lengths = (span - pause * (len(tokens) - 1)) * weights / weights.sum()
    words: list[Word] = []
    cursor = lead
    for tok, length in zip(tokens, lengths, strict=True):
        words.append(Word(tok, round(cursor, 3), round(cursor + float(length), 3)))
        cursor += float(length) + pause
    return tuple(words)


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
    plans, n_videos = _plan(n_clips, seed, levels, label_noise, clips_per_video)

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
        words = _word_times(p.text, duration, crng)
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
