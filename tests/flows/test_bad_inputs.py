"""Bad input, one case per test: each ends in a named ingest reject, an extraction failure row or a
recorded absence, and every good clip is still committed.

One dataset holds every case (media written with PyAV by ``corpora.synth.write_clip`` and
``tests.helpers.media``, so each defect is exactly the one named); it is ingested and extracted
once per module (text.bert, audio.mfcc and vision.cnn), and each case below only asserts on the
result. ``docs/reliability.md`` lists the same matrix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from corpora.ingest import ingest
from corpora.synth import truncate_file, write_clip
from flows.pipeline import pipeline_flow
from stages.config import PipelineConfig
from store import FeatureStore
from store.errors import ManifestError
from store.verify import account, verify
from tests.helpers.media import Audio, Video, cut_between_packets, write_media
from tests.helpers.paths import REPO

EXTRACTORS = {"text.bert": {}, "audio.mfcc": {}, "vision.cnn": {}}
UHD = (3840, 2160)
UHD_SECONDS, UHD_FPS = 2.0, 15  # 30 frames: 750 MB if a decoder kept them all as RGB
RSS_BOUND_MB = 400


# -- media: each file has exactly the property its case names --------------------------------------
def _vfr_times(seconds: float) -> tuple[float, ...]:
    """Frame gaps cycling 33, 50, 120, 40, 250 ms: no constant frame rate at all."""
    pts, gaps = [0], [33, 50, 120, 40, 250]
    while pts[-1] + gaps[len(pts) % 5] < seconds * 1000:
        pts.append(pts[-1] + gaps[len(pts) % 5])
    return tuple(ms / 1000 for ms in pts)


def _garbage_payload(path: Path) -> Path:
    """A valid MP4 (header and index intact) whose media payload is random bytes."""
    data = bytearray(path.read_bytes())
    start, end = data.find(b"mdat") + 4, data.find(b"moov") - 4
    assert 0 < start < end
    data[start:end] = np.random.default_rng(0).bytes(end - start)
    path.write_bytes(bytes(data))
    return path


def _unknown_codec(path: Path) -> Path:
    """A Matroska file whose streams name codecs no decoder knows (codec ids rewritten)."""
    data = path.read_bytes()
    assert b"V_MPEG4/ISO/AVC" in data and b"A_AAC" in data
    path.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_EMOFLOW/NOPE1").replace(b"A_AAC", b"A_ZZZ"))
    return path


# -- the cases ----------------------------------------------------------------------------------
@dataclass
class Case:
    """One manifest row (clip_id, media, text, label, start, end) and what it must end in.

    ``reject``: the ingest reject reason. Otherwise ``outcome`` per extractor: ``"ok"``,
    ``"absent:<reason>"`` or ``"failed:<error type>:<words of the message>"``.
    """

    clip_id: str
    media: str | None
    text: str | bytes = "the movie was good and the acting was nice"
    label: str = "1.0"
    start: str = ""
    end: str = ""
    reject: str | None = None
    message: str = ""
    outcome: dict[str, str] = field(default_factory=dict)


OK = {"text.bert": "ok", "audio.mfcc": "ok", "vision.cnn": "ok"}
CASES = [
    Case("good_0", "media/good_0.mp4", outcome=OK),
    Case("good_1", "media/good_1.mp4", outcome=OK),
    Case("good_2", "media/good_2.mp4", outcome=OK),
    Case("missing_file", "media/not_there.mp4", reject="missing_file", message="does not exist"),
    Case("zero_byte", "media/zero.mp4", reject="empty_media", message="is empty (0 bytes)"),
    Case("truncated_mp4", "media/truncated.mp4", reject="unreadable_media", message="cannot be opened by the decoder"),
    Case("truncated_faststart", "media/truncated_faststart.mp4",
         outcome={"text.bert": "ok", "audio.mfcc": "failed:CorruptMediaError:truncated: audio stream",
                  "vision.cnn": "failed:CorruptMediaError:truncated: video stream"}),
    Case("audio_only", "media/audio_only.m4a", outcome={**OK, "vision.cnn": "absent:no video stream"}),
    Case("video_only", "media/video_only.mp4", outcome={**OK, "audio.mfcc": "absent:no audio stream"}),
    Case("silent_audio", "media/silent.mp4", outcome=OK),
    Case("uhd_4k", "media/uhd.mp4", outcome=OK),
    Case("variable_frame_rate", "media/vfr.mp4", outcome=OK),
    Case("multi_stream", "media/multi.mkv", outcome=OK),
    Case("unknown_codec", "media/unknown_codec.mkv", reject="unreadable_media", message="has no audio or video stream"),
    Case("undecodable_payload", "media/garbage.mp4",
         outcome={"text.bert": "ok", "audio.mfcc": "failed:CorruptMediaError:cannot be decoded",
                  "vision.cnn": "failed:CorruptMediaError:decoding failed"}),
    Case("non_utf8_transcript", "media/good_0.mp4", text=b"the caf\xe9 scene was nice", reject="invalid_text_encoding",
         message="transcript is not valid UTF-8"),
    Case("empty_transcript", "media/good_1.mp4", text="", outcome={**OK, "text.bert": "absent:empty transcript"}),
    Case("nan_label", "media/good_0.mp4", label="nan", reject="invalid_label",
         message="label 'nan' is not a decimal number"),
    Case("label_out_of_range", "media/good_0.mp4", label="4.5", reject="invalid_label",
         message="label 4.5 is outside [-3, 3]"),
    Case("good_0", "media/good_2.mp4", reject="duplicate_clip_id",
         message="duplicate clip_id (first occurrence 'good_0' kept)"),
    Case("window_past_end", "media/good_1.mp4", start="5.0", end="9.0", reject="window_past_end",
         message="is past the end of"),
    Case("path_dotdot", "../outside.mp4", reject="path_escapes_root", message="escapes the dataset root"),
    Case("path_absolute", "{outside}", reject="path_escapes_root", message="escapes the dataset root"),
    Case("path_symlink", "media/link.mp4", reject="path_escapes_root", message="resolves outside the dataset root"),
]
REJECTS = {c.clip_id if c.clip_id != "good_0" else "duplicate_clip_id": c for c in CASES if c.reject}
EXTRACTED = {c.clip_id: c for c in CASES if not c.reject}


def _write_media(root: Path, outside: Path) -> None:
    m = root / "media"
    for k in range(3):
        write_clip(m / f"good_{k}.mp4", seconds=1.5 + 0.25 * k, v=0.5 - k * 0.5, a=0.5 - k * 0.5, seed=k)
    (m / "zero.mp4").write_bytes(b"")
    truncate_file(write_clip(m / "truncated.mp4", seconds=2.0, seed=5), keep=0.5)  # moov atom at the end: lost
    fast = write_media(m / "truncated_faststart.mp4", options={"movflags": "faststart"})
    cut_between_packets(fast, keep=0.5)  # header intact, media data cut
    write_clip(m / "audio_only.m4a", seconds=1.5, video=False, seed=6)
    write_clip(m / "video_only.mp4", seconds=1.5, audio=False, seed=7)
    write_media(m / "silent.mp4", seconds=1.5, event=None)
    write_media(m / "uhd.mp4", seconds=UHD_SECONDS, video=Video(size=UHD, fps=UHD_FPS))
    write_media(m / "vfr.mp4", video=Video(fps=25, frame_times=_vfr_times(3.0)))
    write_media(m / "multi.mkv", seconds=2.0, video=[Video(size=(160, 120)), Video(size=(320, 240))],
                audio=[Audio(sample_rate=8000), Audio(sample_rate=16000)])
    _unknown_codec(write_media(m / "unknown_codec.mkv", seconds=1.5))
    _garbage_payload(write_media(m / "garbage.mp4", seconds=2.0))
    write_clip(outside, seconds=1.0, seed=8)
    os.symlink(outside, m / "link.mp4")


def _write_manifest(root: Path, outside: Path) -> None:
    lines = [b"clip_id,media,start,end,text,label,split"]
    for c in CASES:
        media = (c.media or "").replace("{outside}", str(outside))
        text = c.text if isinstance(c.text, bytes) else c.text.encode()
        lines.append(b",".join([c.clip_id.encode(), media.encode(), c.start.encode(), c.end.encode(),
                                b'"' + text + b'"', c.label.encode(), b"train"]))
    (root / "manifest.csv").write_bytes(b"\n".join(lines) + b"\n")


MEMORY_PROBE = textwrap.dedent(
    """
    import json, resource, sys
    from features.clips import ClipInput
    from features.extractors.base import create_extractor
    from features.media.probe import probe_media

    def clip(path):
        return ClipInput("c", path, None, None, "", probe_media(path).duration)

    ext = create_extractor("vision.cnn", {})
    ext.extract([clip(sys.argv[1])])  # warm up: model loaded, decoders initialised
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (out,) = ext.extract([clip(sys.argv[2])])
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_mb": (after - before) / 1024, "rows": len(getattr(out, "values", [])),
                      "result": type(out).__name__}))
    """
)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory, prefect_harness):
    tmp = tmp_path_factory.mktemp("bad-inputs")
    root, outside = tmp / "data", tmp / "outside.mp4"
    _write_media(root, outside)
    _write_manifest(root, outside)
    # peak-RSS probe of the 4K clip in its own process, running while the dataset is extracted
    probe = subprocess.Popen([sys.executable, "-c", MEMORY_PROBE,
                              str(root / "media/good_0.mp4"), str(root / "media/uhd.mp4")],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cfg = PipelineConfig.model_validate({"store": str(tmp / "store"), "dataset": {"path": str(root)},
                                         "extract": {"extractors": EXTRACTORS, "batch_clips": 4}})
    summary = pipeline_flow(cfg, ["ingest", "extract"])
    out, err = probe.communicate(timeout=300)
    assert probe.returncode == 0, err[-3000:]
    st = FeatureStore.open(cfg.store)
    sets = {st.feature_set(n).attrs["extractor"]: st.feature_set(n) for n in st.feature_set_names()}
    return {"cfg": cfg, "summary": summary, "store": st, "sets": sets, "root": root,
            "memory": json.loads(out.strip().splitlines()[-1])}


# -- assertions, one test per case --------------------------------------------------------------
@pytest.mark.parametrize("key", list(REJECTS))
def test_rejected_at_ingest_with_a_named_reason(key: str, extracted) -> None:
    case = REJECTS[key]
    rejects = [r for r in extracted["store"].rejects().to_pylist() if r["clip_id"] == case.clip_id]
    assert [r["reason"] for r in rejects] == [case.reject], rejects
    (row,) = rejects
    assert case.message in row["message"] and row["source"].startswith("manifest.csv:"), row
    if key != "duplicate_clip_id":  # (the first good_0 is a good clip, kept)
        assert case.clip_id not in extracted["store"].clips().column("clip_id").to_pylist()
        for fset in extracted["sets"].values():
            assert case.clip_id not in fset.index().column("clip_id").to_pylist()


@pytest.mark.parametrize("clip_id", list(EXTRACTED))
def test_extracted_committed_absent_or_failed_by_name(clip_id: str, extracted) -> None:
    case = EXTRACTED[clip_id]
    failures = {(r["extractor"], r["clip_id"]): r for r in extracted["store"].failures().to_pylist()}
    for extractor, expect in case.outcome.items():
        fset = extracted["sets"][extractor]
        committed = clip_id in fset.index().column("clip_id").to_pylist()
        if expect.startswith("failed:"):
            _, error_type, words = expect.split(":", 2)
            assert not committed, f"{extractor}: {clip_id} should not be committed"
            row = failures[(extractor, clip_id)]
            assert row["error_type"] == error_type and words in row["message"], row
            assert clip_id in row["message"] and row["stage"] == "decode" and row["transient"] is False
            continue
        assert committed and (extractor, clip_id) not in failures, f"{extractor}: {clip_id}"
        feat = fset.read(clip_id)
        if expect.startswith("absent:"):
            assert feat.absent == expect.split(":", 1)[1] and feat.values.shape[0] == 0
        else:
            assert feat.absent is None and feat.values.shape[0] > 0 and np.isfinite(feat.values).all()


def test_every_good_clip_is_committed_and_the_store_verifies(extracted) -> None:
    st = extracted["store"]
    clips = set(st.clips().column("clip_id").to_pylist())
    assert clips == set(EXTRACTED)  # everything not rejected is in the clip table
    counts = {c.reject for c in CASES if c.reject}
    assert counts <= set(extracted["summary"]["ingest"]["reject_reasons"])
    assert extracted["summary"]["ingest"]["rejects"] == len(REJECTS)
    accounts = account(st)
    for name, fset in extracted["sets"].items():
        ok = {c for c, case in EXTRACTED.items() if not case.outcome[name].startswith("failed:")}
        assert set(fset.index().column("clip_id").to_pylist()) == ok, name
        assert extracted["summary"]["extract"]["extractors"][name]["failed"] == len(EXTRACTED) - len(ok)
        acc = accounts[fset.name]  # every clip ends as a committed row or an active failure row, none pending
        assert (set(acc.committed), set(acc.failed), acc.pending) == (ok, set(EXTRACTED) - ok, ()), name
    assert verify(st) == []


def test_4k_frames_are_decoded_small_with_bounded_memory(extracted) -> None:
    feat = extracted["sets"]["vision.cnn"].read("uhd_4k")
    assert feat.meta["source_size"] == list(UHD) and feat.meta["size"] == [224, 224]
    assert feat.values.shape[0] == int(np.ceil(UHD_SECONDS * feat.meta["fps"] - 1e-9))
    mem = extracted["memory"]
    assert mem["result"] == "FeatureResult" and mem["rows"] == feat.values.shape[0], mem
    # one 4K RGB frame is 24.9 MB; holding the clip's 30 decoded frames would take ~750 MB
    assert mem["growth_mb"] < RSS_BOUND_MB, mem
    print(f"peak RSS growth decoding the 4K clip: {mem['growth_mb']:.0f} MB")


def test_variable_frame_rate_rows_cover_the_clip_on_a_regular_grid(extracted) -> None:
    clips = extracted["store"].clips().select(["clip_id", "duration"]).to_pydict()
    duration = dict(zip(*clips.values()))["variable_frame_rate"]
    feat = extracted["sets"]["vision.cnn"].read("variable_frame_rate")
    fps = feat.meta["fps"]
    assert feat.values.shape[0] == int(np.ceil(duration * fps - 1e-9))
    np.testing.assert_allclose(feat.times[:, 0], np.arange(feat.values.shape[0]) / fps)
    assert feat.times.max() <= duration + 1e-6


def test_multi_stream_file_uses_the_best_streams_and_says_so(extracted) -> None:
    vision = extracted["sets"]["vision.cnn"].read("multi_stream").meta
    audio = extracted["sets"]["audio.mfcc"].read("multi_stream").meta
    assert vision["n_video_streams"] == 2 and vision["source_size"] == [320, 240]
    assert audio["n_audio_streams"] == 2 and audio["source_sample_rate"] == 16000


def test_silent_audio_gives_finite_features_not_an_absence(extracted) -> None:
    feat = extracted["sets"]["audio.mfcc"].read("silent_audio")
    assert feat.absent is None and feat.values.shape[0] > 0 and np.isfinite(feat.values).all()
    assert np.ptp(feat.values, axis=0).max() < 1e-3  # silence: the same frame over and over


def test_manifest_missing_columns_is_a_named_manifest_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").write_text("clip_id,media,text\na,media/a.mp4,hello\n")
    with pytest.raises(ManifestError) as err:
        ingest(tmp_path)
    assert "missing columns ['label', 'split']" in str(err.value) and "manifest.csv" in str(err.value)
