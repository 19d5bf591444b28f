"""The predictions report: how the sentiment of each scored media file develops over time.

``summarize_predictions`` turns a ``store.schema.PREDICTIONS`` table into one ``MediaSummary`` per
media file (pure, no I/O: the ``emoflow predict`` CLI prints its numbers, ``render_predictions``
draws them). ``render_predictions`` writes ``predictions.html`` (one self-contained file: inline
CSS, base64 PNG timelines, no scripts, as ``report.html``) and ``predictions.md``.

Definitions, used everywhere (summary, plot, text):

- a segment is **failed** when its ``error`` is set or its score is null/non-finite; failed
  segments are listed with their error and left out of every mean, share and smoothing;
- **positive** ``score >= NEUTRAL``, **negative** ``score <= -NEUTRAL``, **neutral** in between
  (``|score| < NEUTRAL``; MOSI-style scores in [-3, 3], so 0.5 is a quarter of one label step either
  side of "no opinion"); shares and the mean count segments, not seconds;
- the **smoothed score** is a centred moving average over ``SMOOTH_SEGMENTS`` scored segments, so
  a single odd sentence does not make a turn; a **turning point** is where the smoothed score
  crosses zero *and* reaches the other side of the neutral band (``NEUTRAL`` is the hysteresis, so
  wobbling around 0 is no turn); it is placed at the first segment past the zero crossing.

A media file without cue times on every segment (text without timing) is *untimed*: it keeps the
table's row order and its timeline runs over segment numbers instead of mm:ss.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from reports.plots import timeline_png
from reports.render import _env
from reports.tables import slug
from store.fs import StoreFS
from store.schema import MODALITIES

NEUTRAL = 0.5  #: |score| below this is neutral; also the hysteresis of turning points
SMOOTH_SEGMENTS = 3  #: window (scored segments, centred) of the smoothed score
TOP = 3  #: most positive / most negative segments listed per media
TEXT_LIMIT = 160  #: characters of segment text (and errors) shown before "…"

Sentiment = Literal["positive", "negative", "neutral"]
Direction = Literal["positive", "negative"]

#: columns ``summarize_predictions`` reads (the unimodal head columns are optional)
REQUIRED = ("media", "video_id", "segment_id", "start", "end", "text", "modalities", "score", "score_std", "error",
            "run")
HEADS = {"text": "score_text", "audio": "score_audio", "vision": "score_vision"}


def clock(seconds: float) -> str:
    """Media time as a player shows it: ``mm:ss``, ``h:mm:ss`` from an hour on (whole seconds, floored)."""
    sign = "-" if seconds < 0 else ""
    s = int(math.floor(abs(seconds) + 1e-6))
    h, m, sec = s // 3600, s // 60 % 60, s % 60
    return f"{sign}{h}:{m:02d}:{sec:02d}" if h else f"{sign}{m:02d}:{sec:02d}"


def sentiment(score: float) -> Sentiment:
    """The class of one score under the ``NEUTRAL`` band."""
    return "positive" if score >= NEUTRAL else "negative" if score <= -NEUTRAL else "neutral"


def clip_text(text: str | None, limit: int = TEXT_LIMIT) -> str:
    """Whitespace collapsed and cut to ``limit`` characters at a word boundary when one is near,
    ending in "…", so a long transcript does not swamp a table row."""
    t = " ".join((text or "").split())
    if len(t) <= limit:
        return t
    cut = t[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


@dataclass(frozen=True)
class Segment:
    """One row of the predictions table, in its media's order; ``score`` None: failed."""

    segment_id: str
    index: int  # position in the media's order (0-based)
    start: float | None
    end: float | None
    text: str
    score: float | None
    score_std: float
    error: str | None
    modalities: tuple[str, ...]
    smoothed: float | None = None  # the smoothed score (None for failed segments)

    @property
    def failed(self) -> bool:
        return self.score is None

    @property
    def span(self) -> str:
        """``01:12–01:19`` (or ``#4`` without times): where to look in the media."""
        if self.start is None or self.end is None:
            return f"#{self.index + 1}"
        return f"{clock(self.start)}–{clock(self.end)}"


@dataclass(frozen=True)
class TurningPoint:
    """Where the smoothed score turns ``direction`` (placed at ``segment``)."""

    direction: Direction
    segment: Segment

    @property
    def time(self) -> float | None:
        return self.segment.start

    @property
    def text(self) -> str:
        """``turns negative at 01:12`` (``at segment 4`` without times)."""
        where = clock(self.time) if self.time is not None else f"segment {self.segment.index + 1}"
        return f"turns {self.direction} at {where}"


@dataclass(frozen=True)
class MediaSummary:
    """Everything the report and the CLI say about one media file (one run of it)."""

    media: str
    video_id: str | None
    run: str | None
    segments: int
    scored: int
    failed: int
    positive: int  # scored segments per class (see ``NEUTRAL``)
    negative: int
    neutral: int
    mean_score: float | None  # mean over scored segments; None when none scored
    modalities: dict[str, int]  # modality -> scored segments whose prediction used it
    head_means: dict[str, float]  # unimodal head -> mean over scored segments that have it
    start: float | None  # first segment start / last segment end (None when untimed)
    end: float | None
    timed: bool
    opening: Direction | None  # first side the smoothed score leaves the neutral band to
    turning_points: tuple[TurningPoint, ...]
    most_positive: tuple[Segment, ...]  # up to TOP with score > 0, highest first
    most_negative: tuple[Segment, ...]  # up to TOP with score < 0, lowest first
    failures: tuple[Segment, ...]
    timeline: tuple[Segment, ...] = field(repr=False)  # every segment in order, smoothed filled in

    def _share(self, n: int) -> float | None:
        return n / self.scored if self.scored else None

    @property
    def share_positive(self) -> float | None:
        return self._share(self.positive)

    @property
    def share_negative(self) -> float | None:
        return self._share(self.negative)

    @property
    def share_neutral(self) -> float | None:
        return self._share(self.neutral)

    @property
    def duration(self) -> float | None:
        """Seconds from the first segment's start to the last one's end (None when untimed)."""
        return None if self.start is None or self.end is None else self.end - self.start

    @property
    def span(self) -> str:
        if self.start is None or self.end is None:
            return f"{self.segments} untimed segments"
        return f"{clock(self.start)}–{clock(self.end)}"

    @property
    def story(self) -> str:
        """``starts positive, turns negative at 01:12`` — the course of the smoothed score in words."""
        if not self.scored:
            return "no scored segments"
        if self.opening is None:
            return "stays neutral throughout"
        parts = [f"starts {self.opening}", *(t.text for t in self.turning_points)]
        if not self.turning_points:
            parts[0] = f"{self.opening} throughout"
        return ", ".join(parts)

    def describe(self) -> str:
        """One line for the CLI: media, segments, mean score, positive / negative shares, time."""
        mean = "–" if self.mean_score is None else f"{self.mean_score:+.2f}"
        shares = ("–" if self.scored == 0 else
                  f"{percent(self.share_positive)} positive / {percent(self.share_negative)} negative")
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.media}: {self.segments} segments{failed}, mean {mean}, {shares}, {self.span}"


def percent(x: float | None) -> str:
    """A share as a whole percentage (``–`` when there is none): one rule for the report and the CLI."""
    return "–" if x is None else f"{100 * x:.0f}%"


def _order(rows: list[int], cols: Mapping[str, list[Any]]) -> tuple[list[int], bool]:
    """Rows of one media in media-time order, or table order when some segment has no times."""
    timed = all(_finite(cols["start"][i]) and _finite(cols["end"][i]) for i in rows)
    if timed:
        rows = sorted(rows, key=lambda i: (cols["start"][i], cols["end"][i], cols["segment_id"][i] or ""))
    return rows, timed


def _smooth(values: Sequence[float]) -> list[float]:
    half = SMOOTH_SEGMENTS // 2
    out = []
    for i in range(len(values)):
        window = values[max(0, i - half): i + half + 1]
        out.append(math.fsum(window) / len(window))
    return out


def _turns(scored: Sequence[Segment]) -> tuple[Direction | None, list[TurningPoint]]:
    """The opening side and the turning points of the smoothed score (see the module docstring)."""
    opening: Direction | None = None
    state: Direction | None = None
    last = 0  # index (in ``scored``) of the last segment on the current side
    turns: list[TurningPoint] = []
    for i, seg in enumerate(scored):
        v = seg.smoothed if seg.smoothed is not None else 0.0
        side = sentiment(v)
        if side == "neutral":
            continue
        if state is None:
            opening = state = side
        elif side != state:
            sign = 1.0 if side == "positive" else -1.0
            at = next(k for k in range(last + 1, i + 1) if sign * (scored[k].smoothed or 0.0) > 0)
            turns.append(TurningPoint(side, scored[at]))
            state = side
        last = i
    return opening, turns


def _summarize(media: str, run: str | None, rows: list[int], cols: Mapping[str, list[Any]]) -> MediaSummary:
    rows, timed = _order(rows, cols)
    segs: list[Segment] = []
    for k, i in enumerate(rows):
        err, score = cols["error"][i], cols["score"][i]
        if err is None and not _finite(score):
            err = "no score" if score is None else f"non-finite score {score}"
        std = cols["score_std"][i]
        segs.append(Segment(
            segment_id=str(cols["segment_id"][i]), index=k,
            start=float(cols["start"][i]) if timed else None, end=float(cols["end"][i]) if timed else None,
            text=cols["text"][i] or "", score=None if err is not None else float(score),
            score_std=float(std) if _finite(std) and std > 0 else 0.0,
            error=None if err is None else (str(err) or "error"),
            modalities=tuple(cols["modalities"][i] or ())))
    scored = [s for s in segs if s.score is not None]
    smoothed = _smooth([s.score for s in scored if s.score is not None])
    by_id = {s.index: dataclasses.replace(s, smoothed=v) for s, v in zip(scored, smoothed)}
    segs = [by_id.get(s.index, s) for s in segs]
    scored = [s for s in segs if s.score is not None]
    scores = [s.score for s in scored if s.score is not None]
    opening, turns = _turns(scored)

    mods: dict[str, int] = {}
    for s in scored:
        for m in s.modalities:
            mods[m] = mods.get(m, 0) + 1
    mods = {m: mods[m] for m in sorted(mods, key=lambda m: (MODALITIES.index(m) if m in MODALITIES else 99, m))}
    heads: dict[str, float] = {}
    for head, col in HEADS.items():
        if col not in cols:
            continue
        # a head's value for a segment without its modality is its padding's, not a score (older parts hold them)
        vals = [cols[col][i] for i, s in zip(rows, segs) if s.score is not None and head in s.modalities]
        vals = [v for v in vals if _finite(v)]
        if vals:
            heads[head] = math.fsum(vals) / len(vals)
    classes = [sentiment(v) for v in scores]
    video_ids = [cols["video_id"][i] for i in rows if cols["video_id"][i]]
    return MediaSummary(
        media=media, video_id=video_ids[0] if video_ids else None, run=run,
        segments=len(segs), scored=len(scored), failed=len(segs) - len(scored),
        positive=classes.count("positive"), negative=classes.count("negative"), neutral=classes.count("neutral"),
        mean_score=math.fsum(scores) / len(scores) if scores else None, modalities=mods, head_means=heads,
        start=min(s.start for s in segs if s.start is not None) if timed else None,
        end=max(s.end for s in segs if s.end is not None) if timed else None, timed=timed,
        opening=opening, turning_points=tuple(turns),
        most_positive=tuple(sorted((s for s in scored if (s.score or 0) > 0), key=lambda s: -(s.score or 0))[:TOP]),
        most_negative=tuple(sorted((s for s in scored if (s.score or 0) < 0), key=lambda s: s.score or 0)[:TOP]),
        failures=tuple(s for s in segs if s.failed), timeline=tuple(segs))


def summarize_predictions(table: pa.Table) -> list[MediaSummary]:
    """One ``MediaSummary`` per (media, run) of a ``PREDICTIONS`` table, sorted by media then run.
    Pure (no I/O), so the CLI's one-line summaries and the report cannot disagree. Media is the
    ``media`` column, else ``video_id`` (a row without either is ``(unnamed)``)."""
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise ValueError(f"not a predictions table: missing column(s) {', '.join(missing)}")
    names = [*REQUIRED, *(c for c in HEADS.values() if c in table.column_names)]
    cols = {c: table.column(c).to_pylist() for c in names}
    groups: dict[tuple[str, str | None], list[int]] = {}
    for i in range(table.num_rows):
        media = cols["media"][i] or cols["video_id"][i] or "(unnamed)"
        groups.setdefault((media, cols["run"][i]), []).append(i)
    return [_summarize(media, run, rows, cols)
            for (media, run), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))]


@dataclass(frozen=True)
class PredictionsReport:
    """What ``render_predictions`` wrote (full paths, or URLs for fsspec outputs) and the summaries it shows."""

    html: str
    markdown: str
    media: list[MediaSummary]


def _info_value(v: Any) -> str:
    return json.dumps(v, default=str, sort_keys=True) if isinstance(v, dict | list | tuple) else str(v)


def _run_info(table: pa.Table, run_info: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Provenance lines: what the table says (runs, fingerprints, prediction time), then ``run_info``
    (which wins for a key both have)."""
    info: dict[str, str] = {}
    for col, label in (("run", "run"), ("run_fingerprint", "run fingerprint"),
                       ("view_fingerprint", "view fingerprint")):
        if col in table.column_names:
            vals = sorted({v for v in table.column(col).to_pylist() if v})
            if vals:
                info[label] = ", ".join(vals)
    if "predicted_at" in table.column_names:
        times = sorted(t for t in table.column("predicted_at").to_pylist() if t is not None)
        if times:
            first, last = (t.isoformat(timespec="seconds") for t in (times[0], times[-1]))
            info["predicted at"] = first if first == last else f"{first} – {last}"
    for k, v in (run_info or {}).items():
        info[str(k)] = _info_value(v)
    return list(info.items())


def _overall(summaries: Sequence[MediaSummary]) -> list[tuple[str, str]]:
    segs = sum(s.segments for s in summaries)
    scored = sum(s.scored for s in summaries)
    total = math.fsum((s.mean_score or 0.0) * s.scored for s in summaries)
    mean = f"{total / scored:+.2f}" if scored else "–"
    return [("media", str(len(summaries))), ("segments", f"{segs} ({scored} scored, {segs - scored} failed)"),
            ("mean score (over scored segments)", mean)]


def _timeline_png(s: MediaSummary) -> str:
    segs = s.timeline
    spans = [((seg.start, seg.end) if s.timed and seg.start is not None and seg.end is not None
              else (seg.index + 0.5, seg.index + 1.5)) for seg in segs]  # untimed: tick k is segment k
    x0 = {seg.index: x for seg, (x, _) in zip(segs, spans)}
    turns = [(x0[t.segment.index], t.direction, t.text.removeprefix("turns ")) for t in s.turning_points]
    return timeline_png(spans, [seg.score for seg in segs], [seg.score_std for seg in segs],
                        [seg.smoothed for seg in segs], turns, NEUTRAL, clock if s.timed else None,
                        f"{s.media}: {s.story}")


def _score(v: float | None) -> str:
    return "–" if v is None else f"{v:+.2f}"


def render_predictions(table: pa.Table, out_dir: Path | str | StoreFS, title: str,
                       run_info: dict[str, Any] | None = None) -> PredictionsReport:
    """Write ``predictions.html`` (self-contained, a timeline per media) and ``predictions.md`` into
    ``out_dir`` (a directory, an fsspec URL or a StoreFS, as ``render_report``; created, files
    replaced atomically) from a ``PREDICTIONS`` table. ``run_info``: extra provenance lines for the
    header (run, seeds, ...), shown after what the table says and winning for the same key."""
    summaries = summarize_predictions(table)
    runs = {s.run for s in summaries}
    sections = [{"key": f"m{i + 1}-{slug(s.media)}", "s": s, "png": _timeline_png(s)}
                for i, s in enumerate(summaries)]
    ctx = {"title": title, "info": _run_info(table, run_info), "overall": _overall(summaries), "sections": sections,
           "show_run": len(runs) > 1, "neutral": NEUTRAL, "smooth": SMOOTH_SEGMENTS, "top": TOP}
    pages = {}
    for fname, template, autoescape in (("predictions.html", "predictions.html.j2", True),
                                        ("predictions.md", "predictions.md.j2", False)):
        env = _env(autoescape)
        env.filters.update(score=_score, clock=clock, clip=clip_text, pct0=percent)
        pages[fname] = env.get_template(template).render(**ctx)
    fs = out_dir if isinstance(out_dir, StoreFS) else StoreFS(out_dir)
    for fname, text in pages.items():
        fs.write_bytes_atomic(fname, text.encode())
    return PredictionsReport(html=f"{fs.url}/predictions.html", markdown=f"{fs.url}/predictions.md", media=summaries)
