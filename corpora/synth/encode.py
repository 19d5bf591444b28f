"""Writing the demo clips as real H.264/AAC files with PyAV (deterministic, byte-identical)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from corpora.synth.signals import (
    AUDIO_SAMPLE_RATE,
    FRAME_SIZE,
    make_scene,
    render_audio,
    rgb_to_yuv420p,
    scene_rgb,
    scene_yuv,
)
from features.clips import Word
from store.fs import atomic_path

# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


# Constant QP, P-frames only, no lookahead. With CRF + mbtree + B-frames (x264's defaults), about
# 1 encode in 100 came out different in another process from identical input (always in the
# right-most macroblock column, i.e. something reads frame-border memory); with the lookahead off,
# 33 full 24-clip runs (several in parallel) were byte-identical. Files stay ~20-45 KB.
_X264_OPTIONS = {
    "preset": "veryfast",
    "x264-params": "bframes=0:scenecut=0:rc-lookahead=0:mbtree=0:sync-lookahead=0:weightp=0",
}


def encode_media(
    path: Path,
    *,
    frames: np.ndarray | None = None,
    yuv: np.ndarray | Sequence[np.ndarray] | None = None,
    fps: int | Fraction,
    audio: np.ndarray | None,
    sample_rate: int,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
    qp: int = 30,
    audio_bitrate: int = 32_000,
) -> None:
    """Mux video and/or audio [samples] or [channels, samples] into one file with PyAV.

    Video is RGB ``frames`` [N, H, W, 3] or, cheaper, packed ``yuv`` 4:2:0 [N, H * 3 / 2, W]; ``yuv``
    may also be a list of such arrays, encoded in order (a long video is not copied into one array).

    Single-threaded x264 and no timestamps in the header keep the bytes identical across runs.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".m4a": "mp4", ".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}.get(path.suffix.lower())
    with atomic_path(path, durable=False) as tmp, av.open(tmp, mode="w", format=fmt) as container:
        container.metadata.clear()
        vstream: av.VideoStream | None = None
        astream: av.AudioStream | None = None
        chunks = [yuv] if isinstance(yuv, np.ndarray) else None if yuv is None else list(yuv)
        if frames is not None and chunks is None and video_codec == "libx264":
            if frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0:
                chunks = [rgb_to_yuv420p(frames)]
        if chunks:
            height, width = chunks[0].shape[1] * 2 // 3, chunks[0].shape[2]
        elif frames is not None:
            height, width = frames.shape[1:3]
        if frames is not None or chunks:
            rate = Fraction(fps)
            options = _X264_OPTIONS | {"qp": str(qp)} if video_codec == "libx264" else {}
            vs = container.add_stream(video_codec, rate=rate, options=options)
            assert isinstance(vs, av.VideoStream)
            vstream = vs
            vstream.width = int(width)
            vstream.height = int(height)
            vstream.pix_fmt = "yuv420p"
            vstream.codec_context.thread_count = 1
            vstream.codec_context.time_base = 1 / rate
        if audio is not None:
            audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
            layout = "mono" if audio.shape[0] == 1 else "stereo"
            aopts = {"aac_coder": "fast"} if audio_codec == "aac" else {}  # 3x faster than twoloop
            aus = container.add_stream(audio_codec, rate=sample_rate, layout=layout, options=aopts)
            assert isinstance(aus, av.AudioStream)
            astream = aus
            astream.bit_rate = audio_bitrate
            astream.codec_context.thread_count = 1
        if vstream is not None:
            source = (arr for part in chunks for arr in part) if chunks else frames
            assert source is not None
            for i, arr in enumerate(source):
                if chunks:
                    frame = av.VideoFrame.from_ndarray(arr, format="yuv420p")
                else:  # other codecs: let PyAV convert
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
                frame.pts = i
                container.mux(vstream.encode(frame))
            container.mux(vstream.encode(None))
        if astream is not None:
            assert audio is not None
            chunk = 1024
            for s0 in range(0, audio.shape[1], chunk):
                block = np.ascontiguousarray(audio[:, s0 : s0 + chunk])
                aframe = av.AudioFrame.from_ndarray(
                    block, format="fltp", layout="mono" if block.shape[0] == 1 else "stereo"
                )
                aframe.sample_rate = sample_rate
                aframe.pts = s0
                aframe.time_base = Fraction(1, sample_rate)
                container.mux(astream.encode(aframe))
            container.mux(astream.encode(None))


class Timeline:
    """Pieces of one file laid back to back on the video's frame grid, then encoded as one stream.

    Why: pieces rendered separately (MOSI-style segments, the long demo video) must stay in A/V sync
    in the joined file. Each piece's audio is cut or zero-padded to end exactly at
    ``round(frames_so_far * sample_rate / fps)``, so rounding never accumulates into drift.
    """

    def __init__(self, fps: int, sample_rate: int) -> None:
        self.fps = fps
        self.sample_rate = sample_rate
        self.n_frames = 0
        self.n_samples = 0
        self._yuv: list[np.ndarray] = []
        self._audio: list[np.ndarray] = []

    @property
    def duration(self) -> float:
        """Seconds laid down so far (whole frames)."""
        return self.n_frames / self.fps

    def append(self, yuv: np.ndarray, audio: np.ndarray) -> tuple[float, float]:
        """Add packed yuv420p frames and the mono audio that goes with them; returns the piece's
        (start, end) in seconds of the joined file."""
        start = self.duration
        self._yuv.append(yuv)
        self.n_frames += len(yuv)
        end_sample = int(round(self.n_frames * self.sample_rate / self.fps))
        self._audio.append(_fit(audio, end_sample - self.n_samples))
        self.n_samples = end_sample
        return start, self.duration

    def encode(self, path: Path) -> None:
        """Write everything appended so far as one H.264/AAC file (see :func:`encode_media`)."""
        if not self._yuv:
            raise ValueError("nothing appended to the timeline")
        encode_media(
            path,
            yuv=self._yuv,
            fps=self.fps,
            audio=np.concatenate(self._audio),
            sample_rate=self.sample_rate,
        )


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Pad with zeros or cut ``x`` to exactly ``n`` samples."""
    if len(x) >= n:
        return x[:n]
    return np.concatenate([x, np.zeros(n - len(x), x.dtype)])


def write_clip(
    path: str | Path,
    *,
    seconds: float,
    fps: int | Fraction = 15,
    size: tuple[int, int] = FRAME_SIZE,
    audio: bool = True,
    video: bool = True,
    sample_rate: int = AUDIO_SAMPLE_RATE,
    channels: int = 1,
    v: float = 0.0,
    a: float = 0.0,
    words: Sequence[Word] | None = None,
    seed: int = 0,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
) -> Path:
    """Write one synthetic media file (for tests: audio-only, video-only, odd rates/sizes, stereo).

    ``size`` is (width, height); ``v``/``a`` set the planted vision/audio signal; without ``words``
    one "word" per second is spoken. The container follows the suffix (.mp4, .m4a, .mov, .mkv).
    """
    if not (audio or video):
        raise ValueError("write_clip needs audio=True or video=True")
    if video and video_codec == "libx264" and (size[0] % 2 or size[1] % 2):
        raise ValueError(f"libx264 with yuv420p needs an even width and height, got {size}")
    path = Path(path)
    rng = np.random.default_rng(seed)
    if words is None:
        words = tuple(
            Word(f"w{i}", i + 0.2, min(seconds, i + 0.8)) for i in range(int(seconds)) if i + 0.3 < seconds
        )
    n_frames = max(1, int(round(seconds * float(fps))))
    scene = make_scene(n_frames, float(fps), v, size, words, rng) if video else None
    use_yuv = video_codec == "libx264"  # even size checked above; other codecs get RGB
    yuv = scene_yuv(scene) if scene is not None and use_yuv else None
    frames = scene_rgb(scene) if scene is not None and not use_yuv else None
    samples = None
    if audio:
        n = max(1, int(round(seconds * sample_rate)))
        mono = render_audio(n, a, words, sample_rate=sample_rate, rng=rng)
        samples = np.repeat(mono[None, :], channels, axis=0)
    encode_media(
        path,
        frames=frames,
        yuv=yuv,
        fps=fps,
        audio=samples,
        sample_rate=sample_rate,
        video_codec=video_codec,
        audio_codec=audio_codec,
    )
    return path


def truncate_file(path: str | Path, keep: float = 0.5) -> Path:
    """Cut a media file to ``keep`` of its bytes: a quick way to make corrupt media for tests."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path
