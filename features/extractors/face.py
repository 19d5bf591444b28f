"""``vision.face``: per sampled frame, the largest face, cropped square and embedded by the same
EfficientNet-Lite0 as ``vision.cnn`` (1280-d). A frame without a face is a *faceless* row (zero
vector, ``extras["face"]`` False), never a failure of the clip.

Frames are the ones ``vision.cnn`` samples (same decoder, same times), decoded at their aspect
ratio with the longest side at most ``detect_size`` (never upscaled), so the detector and the crop
see undistorted faces. The detector is dlib's HOG + linear-SVM frontal face detector
(``dlib.get_frontal_face_detector``: five sub-detectors, frontal, two turned, two rolled ~±20°),
whose model is compiled into the ``dlib-bin`` wheel (Boost Software License): nothing to download,
11 MB installed. Chosen over OpenCV's Haar cascades on measurements (docs/extraction.md): it found
the face in more frames of the portrait videos (100% vs 62-100%), reported no face on the face-free
shared clips where the Haar default cascade saw one in 21% of the space-footage frames, ran 2.5-3×
faster on 640x360 frames and installs in 11 MB instead of 162 MB. OpenCV's YuNet, MediaPipe's
BlazeFace and SCRFD ship no weights in their PyPI packages (they download them), so they were out.

Alignment: a square crop of side ``(1 + 2 * margin)`` times the box's side, centred on the box
(black outside the frame), resized to ``crop_size``. No eye-based rotation: dlib's landmark models
are separate ~10-100 MB downloads; the sub-detector index (``extras["face_pose"]``) says when a
face was found rolled or turned. The largest face is taken: active-speaker detection (lip motion
against the audio) is not robust with a box-only detector, so a two-person shot embeds whoever is
biggest; ``extras["n_faces"]`` shows where that ambiguity exists.

Still frames (max abs pixel difference ≤ ``still_max_diff`` to the last frame that went through the
detector) and, when ``near_duplicate`` is set (off by default, unlike ``vision.cnn``: a small face
can change expression under the threshold), near-duplicate ones (mean abs difference ≤ it, on the
detector-sized frames) reuse that frame's detection and embedding, with ``vision.cnn``'s rule.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar

import dlib
import numpy as np
from PIL import Image
from pydantic import Field

from features.clips import ClipInput
from features.extractors.base import (
    ClipFailure,
    ExtractorConfig,
    FeatureResult,
    model_cache,
    register_extractor,
)
from features.extractors.efficientnet import (
    FEATURE_DIM,
    efficientnet_identity,
)
from features.extractors.vision import (
    ClipRows,
    FrameCnnConfig,
    FrameCnnExtractor,
    embed_pending,
)
from features.media.probe import MediaInfo
from features.media.streams import select_stream
from features.media.video import display_rotation

DETECTOR = "dlib.get_frontal_face_detector (HOG + linear SVM, 5 sub-detectors)"
# dlib's sub-detector indices, as its training code orders them
POSES = ("frontal", "left", "right", "frontal rolled left", "frontal rolled right")


class FaceVisionConfig(FrameCnnConfig):
    """Frame sampling and CNN settings (``FrameCnnConfig``, as ``vision.cnn``), detection and crop.

    ``detect_size``: longest side, in pixels, of the frames the detector sees (smaller sources are
    not upscaled); dlib's detector finds faces from about 80 px at ``upsample`` 0, 40 px at 1 (4×
    the time). ``threshold``: added to dlib's decision threshold (negative: more faces, more false
    ones). ``margin``: context added on each side of the face box, as a fraction of its side.
    Runtime knobs (device, runtime, batch_size, shared_batches, chunk_size, prefetch, channels_last) do not
    enter the identity.
    """

    detect_size: int = Field(640, ge=64)
    upsample: int = Field(0, ge=0, le=2)
    threshold: float = 0.0
    margin: float = Field(0.25, ge=0.0, le=1.0)
    crop_size: int = Field(224, ge=16)


@dataclass(frozen=True)
class Face:
    """One detection: ``box`` (x, y, w, h) in frame pixels, dlib's SVM ``score``, sub-detector ``pose``."""

    box: tuple[float, float, float, float]
    score: float
    pose: int

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


_THREAD = threading.local()


def load_face_detector() -> Any:
    """dlib's frontal face detector (its model is compiled into the library), one per thread: a
    detector keeps its scan buffers between calls, so two threads running one on frames of different
    sizes corrupt the heap and abort the process (the threads runner runs two batches at once)."""
    detector = getattr(_THREAD, "detector", None)
    if detector is None:
        detector = _THREAD.detector = dlib.get_frontal_face_detector()
    return detector


@model_cache
def detector_sha256() -> str:
    """sha256 of the detector as dlib serialises it: the weights' identity, though no file ships them."""
    with tempfile.TemporaryDirectory(prefix="emoflow-dlib-") as tmp:
        path = os.path.join(tmp, "detector.svm")
        load_face_detector().save(path)
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()


def detect_faces(detector: Any, frame: np.ndarray, upsample: int = 0, threshold: float = 0.0) -> list[Face]:
    """Faces in an RGB uint8 frame, largest first (boxes clipped to the frame)."""
    rects, scores, poses = detector.run(np.ascontiguousarray(frame), upsample, threshold)
    h, w = frame.shape[:2]
    faces = []
    for r, s, p in zip(rects, scores, poses):
        x0, y0 = max(r.left(), 0), max(r.top(), 0)
        x1, y1 = min(r.right() + 1, w), min(r.bottom() + 1, h)
        if x1 > x0 and y1 > y0:
            faces.append(Face((float(x0), float(y0), float(x1 - x0), float(y1 - y0)), float(s), int(p)))
    return sorted(faces, key=lambda f: f.area, reverse=True)


def face_crop(frame: np.ndarray, box: tuple[float, float, float, float], margin: float, size: int) -> np.ndarray:
    """The square around ``box`` (side ``(1 + 2 margin) · max(w, h)``, black outside the frame),
    resized to ``size`` × ``size``: the CNN sees the face at one scale whatever its size in the frame."""
    x, y, w, h = box
    side = max(1, round(max(w, h) * (1 + 2 * margin)))
    x0, y0 = round(x + w / 2 - side / 2), round(y + h / 2 - side / 2)
    fh, fw = frame.shape[:2]
    out = np.zeros((side, side, 3), np.uint8)
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + side, fw), min(y0 + side, fh)
    if ax1 > ax0 and ay1 > ay0:
        out[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] = frame[ay0:ay1, ax0:ax1]
    return np.array(Image.fromarray(out).resize((size, size), Image.Resampling.BICUBIC))  # writable, for torch


def detection_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """(width, height) with the aspect ratio kept, the longest side at most ``longest``, even sides."""
    scale = min(1.0, longest / max(width, height))
    return max(16, 2 * round(width * scale / 2)), max(16, 2 * round(height * scale / 2))


@dataclass
class _Clip(ClipRows):
    """``ClipRows`` plus each computed row's detection and the decoded frame size."""

    size: tuple[int, int] = (0, 0)  # (width, height) of the decoded frames
    faces: dict[int, tuple[Face | None, int]] = field(default_factory=dict)  # row → (chosen face, n faces)


@register_extractor
class FaceVisionExtractor(FrameCnnExtractor):
    """Largest face per sampled frame, EfficientNet-Lite0-embedded; faceless frames are flagged rows."""

    name: ClassVar[str] = "vision.face"
    version: ClassVar[str] = "1"
    modality: ClassVar[str] = "vision"
    row_mask: ClassVar[str | None] = "face"  # faceless frames are zero rows the aligner leaves out
    config_cls: ClassVar[type[ExtractorConfig]] = FaceVisionConfig
    cost_per_second: ClassVar[float] = 0.017
    config: FaceVisionConfig

    @property
    def input_size(self) -> tuple[int, int]:
        return self.config.crop_size, self.config.crop_size

    def model_identity(self) -> dict[str, Any]:
        return {
            "detector": DETECTOR,
            "detector_version": f"dlib {dlib.__version__}",
            "detector_sha256": detector_sha256(),
            "selection": "largest face; square crop centred on the box, black outside the frame, bicubic",
            "embedding": efficientnet_identity(self.weights_path),
        }

    def _frame_size(self, path: str, info: MediaInfo) -> tuple[int, int]:
        """Upright source size scaled to ``detect_size`` (a quarter-turn rotation swaps the sides)."""
        chosen = select_stream(info, "video", self.config.video_stream)
        if chosen is None or not chosen.width or not chosen.height:
            return 16, 16  # open_video reports the missing stream itself
        w, h = chosen.width, chosen.height
        if display_rotation(path, chosen) % 180:
            w, h = h, w
        return detection_size(w, h, self.config.detect_size)

    def extract(self, clips: list[ClipInput]) -> list[FeatureResult | ClipFailure]:
        cfg = self.config
        try:
            encoder, batch_size = self.encoder(), self.batch_size
            detector = load_face_detector()
        except Exception as exc:  # missing weights or runtime fail every clip, clearly
            return [
                ClipFailure(c.clip_id, "extract", type(exc).__name__, f"clip {c.clip_id!r}: vision.face model: {exc}")
                for c in clips
            ]
        results: dict[int, FeatureResult | ClipFailure] = {}
        states: dict[int, _Clip] = {}
        pending: list[tuple[int, int, np.ndarray]] = []  # (clip, row, crop)

        def run_pending() -> None:
            embed_pending(encoder, pending, clips, results, {i: st.feats for i, st in states.items()})

        for ev in self._frames(clips, self._frame_size):
            kind, i = ev[0], ev[1]
            if kind == "result":
                results[i] = ev[2]
            elif kind == "start":
                states[i] = _Clip(meta=ev[2])
            elif kind == "frames":
                st = states[i]
                for frame, span in zip(ev[2], ev[3]):
                    st.size = (frame.shape[1], frame.shape[0])
                    row = st.add(frame, span, cfg.still_max_diff, cfg.near_duplicate)
                    if row is None:
                        continue
                    faces = detect_faces(detector, frame, cfg.upsample, cfg.threshold)
                    st.faces[row] = (faces[0] if faces else None, len(faces))
                    if faces:
                        pending.append((i, row, face_crop(frame, faces[0].box, cfg.margin, cfg.crop_size)))
                        if len(pending) >= batch_size:
                            run_pending()
            elif kind == "end":
                states[i].end()
        run_pending()
        return [results[i] if i in results else self._result(states[i], encoder.runtime) for i in range(len(clips))]

    def _result(self, st: _Clip, runtime: str) -> FeatureResult:
        """The clip's rows: embeddings of the chosen faces, zeros and ``face`` False where none."""
        n = len(st.source)
        values = np.zeros((n, FEATURE_DIM), np.float32)
        has_face = np.zeros(n, bool)
        boxes = np.zeros((n, 4), np.float32)
        scores = np.zeros(n, np.float32)
        poses = np.full(n, -1, np.int8)
        counts = np.zeros(n, np.int16)
        w, h = st.size
        for r, src in enumerate(st.source):
            face, count = st.faces[src]
            counts[r] = count
            if face is None:
                continue
            values[r] = st.feats[src]
            has_face[r] = True
            x, y, bw, bh = face.box
            boxes[r] = (x / w, y / h, bw / w, bh / h)
            scores[r], poses[r] = face.score, face.pose
        meta = dict(st.meta)
        meta.update({
            "n_frames": n,
            "n_detected": len(st.faces),
            "n_computed": len(st.feats),
            "n_near_duplicate": st.n_near_duplicate,
            "face_frames": int(has_face.sum()),
            "face_rate": float(has_face.mean()) if n else None,
            "multi_face_frames": int((counts > 1).sum()),
            "detector": "dlib-hog",
            "model": "efficientnet-lite0",
            "runtime": runtime,
        })
        return FeatureResult(
            values=values,
            times=np.asarray(st.times, np.float64).reshape(n, 2),
            extras={"face": has_face, "face_box": boxes, "face_score": scores, "face_pose": poses, "n_faces": counts},
            meta=meta,
        )
