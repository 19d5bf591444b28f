"""Short face videos built with PyAV from the two public-domain portraits in ``../shared/data/faces``
(never copied into the repository), with the true face box of every frame known, so a test can
check not only *that* a face was found but *which* one and *where*.

Scenes (``SCENES``): ``frontal`` (still head and shoulders, slight lighting drift), ``pan`` (moves
across the frame), ``zoom`` (grows from a small to a large face), ``occluded`` (frontal, a grey
card over the left half of the face), ``tilted`` (frontal, rolled by ``TILT`` degrees), ``pair``
(both portraits side by side, the first one larger).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

SIZE = (640, 360)  # (width, height) of the videos
FPS = 10
TILT = 12.0  # degrees counter-clockwise in the tilted scene

# Face boxes (x, y, w, h) in the original JPEGs: found by OpenCV's Haar and dlib's HOG detectors
# (they agree within 10%) and checked by eye; everything below is placed relative to them.
FACE_BOXES = {"obama.jpg": (342, 95, 300, 300), "biden.jpg": (433, 211, 314, 314)}
SCENES = ("frontal", "pan", "zoom", "occluded", "tilted", "pair")
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Portrait:
    """A head-and-shoulders square cut from a portrait, and its face box in that cut (pixels)."""

    image: np.ndarray  # [S, S, 3] uint8
    face: Box


def load_portrait(path: Path) -> Portrait:
    """The square of side 2.5 face widths centred just below the face (hair to shoulders)."""
    img = Image.open(path).convert("RGB")
    x, y, w, h = FACE_BOXES[path.name]
    side = 2.5 * w
    cx, cy = x + w / 2, max(y + h / 2 + 0.2 * h, side / 2)  # no band above the picture
    left, top = cx - side / 2, cy - side / 2
    cut = img.crop((round(left), round(top), round(left + side), round(top + side)))  # pads black outside
    return Portrait(np.asarray(cut), (x - left, y - top, w, h))


def _background(t: float) -> np.ndarray:
    """A soft grey-blue gradient wall (no face-like structure), brightness drifting with ``t``."""
    w, h = SIZE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 90 + 50 * (xx / w) + 30 * (yy / h) + 8 * math.sin(2 * math.pi * t / 4)
    return np.clip(np.stack([base, base + 10, base + 25], axis=-1), 0, 255).astype(np.uint8)


def _paste(canvas: np.ndarray, p: Portrait, cx: float, cy: float, side: float) -> Box:
    """Paste ``p`` scaled to ``side`` pixels centred at (cx, cy); returns the face box in the canvas."""
    s = max(2, round(side))
    img = np.asarray(Image.fromarray(p.image).resize((s, s), Image.Resampling.BICUBIC))
    x0, y0 = round(cx - s / 2), round(cy - s / 2)
    h, w = canvas.shape[:2]
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h)
    if ax1 > ax0 and ay1 > ay0:
        canvas[ay0:ay1, ax0:ax1] = img[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0]
    k = s / p.image.shape[0]
    fx, fy, fw, fh = p.face
    return (x0 + fx * k, y0 + fy * k, fw * k, fh * k)


def _rotate(frame: np.ndarray, degrees: float, box: Box) -> tuple[np.ndarray, Box]:
    """Roll the frame about the face centre (counter-clockwise); the box keeps its centre and size."""
    x, y, w, h = box
    img = Image.fromarray(frame).rotate(degrees, Image.Resampling.BICUBIC, center=(x + w / 2, y + h / 2))
    return np.asarray(img), box


def scene_frame(scene: str, portraits: list[Portrait], t: float, seconds: float) -> tuple[np.ndarray, list[Box]]:
    """The frame of ``scene`` at ``t`` and the true face boxes in it (largest first)."""
    w, h = SIZE
    u = t / seconds  # 0 → 1 over the clip
    canvas = _background(t)
    p = portraits[0]
    if scene in ("frontal", "occluded", "tilted"):
        box = _paste(canvas, p, w / 2, h / 2, 0.95 * h)
        if scene == "occluded":
            x, y, fw, fh = box
            canvas[round(y - 0.1 * fh) : round(y + 1.2 * fh), round(x - 0.1 * fw) : round(x + fw / 2)] = (128, 128, 120)
        elif scene == "tilted":
            canvas, box = _rotate(canvas, TILT, box)
        return canvas, [box]
    if scene == "pan":
        side = 0.8 * h
        return canvas, [_paste(canvas, p, side / 2 + u * (w - side), h / 2, side)]
    if scene == "zoom":
        return canvas, [_paste(canvas, p, w / 2, h / 2, (0.45 + 1.0 * u) * h)]
    if scene == "pair":
        big = _paste(canvas, p, 0.3 * w, h / 2, 0.95 * h)
        small = _paste(canvas, portraits[1], 0.76 * w, 0.55 * h, 0.6 * h)
        return canvas, [big, small]
    raise ValueError(f"unknown scene {scene!r}; known: {', '.join(SCENES)}")


def write_face_video(
    path: Path, scene: str, faces_dir: Path, *, first: str = "obama.jpg", second: str = "biden.jpg",
    seconds: float = 4.0, fps: int = FPS,
) -> list[list[Box]]:
    """Write ``scene`` as an h264 mp4 (no audio) and return each frame's true face boxes (frame k
    shows at k / fps). ``first`` is the portrait of one-face scenes and the larger one of ``pair``."""
    portraits = [load_portrait(faces_dir / first), load_portrait(faces_dir / second)]
    return write_frames(path, lambda t: scene_frame(scene, portraits, t, seconds), seconds, fps)


def write_frames(
    path: Path, frame_at: Callable[[float], tuple[np.ndarray, list[Box]]], seconds: float, fps: int = FPS
) -> list[list[Box]]:
    """Encode ``frame_at(t)`` for t = k / fps as an h264 mp4; returns the boxes ``frame_at`` gave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    truth: list[list[Box]] = []
    with av.open(str(path), "w", format="mp4") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        vs.time_base = vs.codec_context.time_base = Fraction(1, fps)
        vs.options = {"preset": "ultrafast", "crf": "20", "g": str(fps)}
        for k in range(round(seconds * fps)):
            frame, boxes = frame_at(k / fps)
            truth.append(boxes)
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = k
            c.mux(vs.encode(vf))
        c.mux(vs.encode(None))
    return truth


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0
