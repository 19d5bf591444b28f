"""Planning a seeded dataset: every random draw (components, labels, sentences, splits, videos, word
times) happens here, from one seed, so rendering is deterministic given the plan."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from corpora.synth.signals import LEXICON, Split
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

# --------------------------------------------------------------------------------------------
# Planning (all randomness happens here, from one seed)
# --------------------------------------------------------------------------------------------


@dataclass
class ClipPlan:
    index: int
    t: float
    a: float
    v: float
    label: float
    text: str
    split: Split = "train"
    video: int = -1
    local: int = -1


def opinion_sentence(t: float, rng: np.random.Generator) -> str:
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


def _assign_splits(plans: list[ClipPlan], rng: np.random.Generator) -> None:
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


def _assign_videos(plans: list[ClipPlan], clips_per_video: int, rng: np.random.Generator) -> int:
    """Group clips into videos within one split (MOSI folds split whole videos), signs mixed."""
    videos: list[list[ClipPlan]] = []
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
        chunks: list[list[ClipPlan]] = [[] for _ in range(n_videos)]
        for j, p in enumerate(mixed):
            chunks[j % n_videos].append(p)
        videos.extend(chunks)
    for vid, idx in enumerate(rng.permutation(len(videos))):
        for local, p in enumerate(videos[int(idx)]):
            p.video, p.local = vid, local
    return len(videos)


def plan_clips(
    n_clips: int, seed: int, levels: int, label_noise: float, clips_per_video: int
) -> tuple[list[ClipPlan], int]:
    rng = np.random.default_rng([seed, 0x5EED])
    grid = np.linspace(-1.0, 1.0, levels)
    for _attempt in range(1000):
        comps = np.stack([_balanced(grid, n_clips, rng) for _ in range(3)], axis=1)
        noise = rng.normal(0.0, label_noise, n_clips)
        labels = np.round(np.clip(comps.sum(axis=1) + noise, -3.0, 3.0), 3)
        if n_clips < 6 or ((labels < 0).sum() >= 3 and (labels > 0).sum() >= 3):
            break
    plans = [
        ClipPlan(i, float(t), float(a), float(v), float(lab) + 0.0, opinion_sentence(float(t), rng))
        for i, ((t, a, v), lab) in enumerate(zip(comps, labels, strict=True))
    ]
    _assign_splits(plans, rng)
    n_videos = _assign_videos(plans, clips_per_video, rng)
    return plans, n_videos


def word_times(text: str, duration: float, rng: np.random.Generator) -> tuple[Word, ...]:
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
