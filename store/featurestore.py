"""The feature store: a directory (or fsspec URL) of Parquet tables and Zarr v3 feature shards.

Commit protocol: a batch writes its shard under a fresh id, then its index part. Readers trust only
clips listed in index parts, so a crash leaves at most an orphan shard (``vacuum`` removes it),
never a half-visible clip. Every writer owns its shard, so concurrent writers need no locks.

Index rows are keyed by clip id; a fingerprint says which inputs a row was computed from. Clips with
identical inputs share one extraction: ``link`` commits index rows that point at an existing shard
range, so a shard may be referenced by several clips.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

from store import schema
from store.errors import StoreConflictError, StoreError
from store.featureset import FeatureSet
from store.fingerprint import MODALITY_INPUTS, feature_fingerprints, hash_obj
from store.fs import StoreFS, damaged_as_store_error
from store.ids import new_id, now_utc

FORMAT = "emoflow-store"
MEDIA_SOURCES = "predict_sources.json"
REJECTS_OF = "clips_sha256"  # rejects.parquet's metadata key: the clip table they were ingested with
FINGERPRINT_CACHE = "cache/fingerprints"  # planning's per-set feature fingerprints of the clip table
FORMAT_VERSION = 2  # 2: a feature set's index may be consolidated (store.index); version 1 code would miss rows
READABLE_VERSIONS = (1, 2)  # a version 1 store is a version 2 store that was never compacted


#: Longest component ``quote_name`` returns: a file named by it keeps room for the longest suffix a
#: store adds (``.parquet``, 8) and ``store.fs.atomic_path``'s ``.tmp-<32 hex>-`` prefix (38) within
#: the 255 bytes a file name may have (ext4, APFS, NTFS, object-store tools). Names that were short
#: enough before keep their component, so a rerun overwrites the same file.
NAME_LIMIT = 255 - 38 - 8
_NAME_HASH = 16  # hex digits of sha256 of the full name after a cut: collisions need 2^32 long names


def quote_name(name: str) -> str:
    """A user-given name (run, video, report) as one path component that every store can write.

    Percent-quoted (separators, non-ASCII, a leading ``.`` that would hide the file from listings);
    when that is longer than ``NAME_LIMIT``, a readable prefix cut at a character boundary, ``+``
    (which quoting never leaves, so a cut name never equals a whole one) and a hash of the full
    name: deterministic, so a rerun overwrites the same file."""
    quoted = [quote(c, safe="", errors="surrogatepass") for c in name]
    if quoted[:1] == ["."]:
        quoted[0] = "%2E"
    whole = "".join(quoted)
    if len(whole) <= NAME_LIMIT:
        return whole
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_NAME_HASH]
    prefix, room = "", NAME_LIMIT - 1 - _NAME_HASH
    for q in quoted:
        if len(prefix) + len(q) > room:
            break
        prefix += q
    return f"{prefix}+{digest}"


@dataclass(frozen=True)
class MediaSource:
    """The input file a predict store's video id stands for (``FeatureStore.media_sources``): its real
    path, and the sha256 of its bytes, which recognises the file after a move (None when it could not
    be read, and for ids recorded before the hash was kept)."""

    path: str
    sha256: str | None = None


class FeatureStore:
    """Entry point: ``FeatureStore.open(url, create=True)``."""

    def __init__(self, fs: StoreFS) -> None:
        self.fs = fs

    @property
    def url(self) -> str:
        return self.fs.url

    @classmethod
    def open(cls, url: str | os.PathLike[str], create: bool = False) -> FeatureStore:
        fs = StoreFS(url)
        if fs.exists("store.json"):
            meta = fs.read_json("store.json", "store description")
            if meta.get("format") != FORMAT or meta.get("version") not in READABLE_VERSIONS:
                raise StoreError(f"{fs.url}: not an emoflow store of format version {FORMAT_VERSION}: {meta}")
        elif create:
            fs.write_bytes_atomic(
                "store.json",
                json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "created": now_utc().isoformat()}).encode(),
            )
        else:
            raise StoreError(f"{fs.url}: no emoflow store here (store.json missing); run `emoflow ingest` first")
        return cls(fs)

    def upgrade_format(self) -> None:
        """Mark the store as format ``FORMAT_VERSION`` (before its first compaction publishes): code that
        reads version 1 only then refuses the store instead of missing the consolidated rows."""
        meta = self.fs.read_json("store.json", "store description")
        if meta.get("version") != FORMAT_VERSION:
            meta |= {"version": FORMAT_VERSION, "upgraded": now_utc().isoformat()}
            self.fs.write_bytes_atomic("store.json", json.dumps(meta).encode())

    # -- clip table ------------------------------------------------------------------------
    def write_clips(self, table: pa.Table) -> None:
        self.fs.write_parquet("clips.parquet", schema.conform(table, schema.CLIPS))

    def write_clip_tables(self, clips: pa.Table, rejects: pa.Table) -> None:
        """One ingest's clip table and rejects. The rejects go first, tagged with the sha256 of the
        clip table they belong to; the clip table, which every later stage reads, last. A writer
        killed between the two leaves the older clip table whole, and rejects ``rejects_belong``
        tells apart (``store verify`` names them; the next ingest rewrites them)."""
        buf = io.BytesIO()
        pq.write_table(schema.conform(clips, schema.CLIPS), buf, compression="zstd")
        data = buf.getvalue()
        self.write_rejects(rejects, hashlib.sha256(data).hexdigest())
        self.fs.write_bytes_atomic("clips.parquet", data)

    def clips(self) -> pa.Table:
        return self.clips_with_digest()[0]

    def clips_with_digest(self) -> tuple[pa.Table, str]:
        """The clip table and the sha256 of its file: a content key for what is derived from the
        whole table (planning's fingerprint cache). An absent table has the digest of no bytes."""
        if not self.fs.exists("clips.parquet"):
            return schema.CLIPS.empty_table(), hashlib.sha256(b"").hexdigest()
        data = self.fs.read_bytes("clips.parquet")
        with damaged_as_store_error(self.fs.path("clips.parquet"), "clip table"):
            table = schema.conform(pq.read_table(io.BytesIO(data)), schema.CLIPS)  # older stores lack columns
        return table, hashlib.sha256(data).hexdigest()

    # -- planning cache ----------------------------------------------------------------------
    def cached_fingerprints(self, set_name: str, key: str) -> list[str] | None:
        """The feature fingerprints of every clip-table row (in table order) that planning stored
        for ``set_name`` under ``key``, or None when absent or made for another key (a changed clip
        table or extractor identity): a derived cache, safe to delete."""
        try:  # one GET on an object store, not a HEAD first
            table = self.fs.read_parquet(f"{FINGERPRINT_CACHE}/{quote_name(set_name)}.parquet")
        except FileNotFoundError:
            return None
        if (table.schema.metadata or {}).get(b"key") != key.encode():
            return None
        return table.column("fingerprint").to_pylist()

    def clip_fingerprints(
        self, set_name: str, modality: str, identity: dict[str, Any], clips: pa.Table, digest: str,
        cache: bool = True,
    ) -> list[str]:
        """The feature fingerprint of every row of ``clips`` (the clip table, whose file has sha256
        ``digest``) for one extractor, from the planning cache when the table's content and the
        identity are unchanged: hashing 10^6 clips takes ~6 s, reading them back ~0.1 s.
        ``cache=False`` reads the cache but never writes it (dry runs, ``store ls``)."""
        key = hash_obj({"clips_sha256": digest, "modality": modality, "identity": identity,
                        "rule": "store.fingerprint.feature_fingerprint"}, length=64)
        fps = self.cached_fingerprints(set_name, key)
        if fps is not None and len(fps) == clips.num_rows:
            return fps
        columns = clips.select(list(MODALITY_INPUTS[modality])).to_pydict()
        fps = feature_fingerprints(columns, modality, identity)
        if cache:
            self.write_fingerprint_cache(set_name, key, fps)
        return fps

    def write_fingerprint_cache(self, set_name: str, key: str, fingerprints: list[str]) -> None:
        table = pa.table({"fingerprint": pa.array(fingerprints, pa.string())}).replace_schema_metadata({"key": key})
        self.fs.write_parquet(f"{FINGERPRINT_CACHE}/{quote_name(set_name)}.parquet", table)

    def write_rejects(self, table: pa.Table, clips_sha256: str | None = None) -> None:
        """``clips_sha256``: the digest of the clip table these rejects belong to (``write_clip_tables``)."""
        table = table.cast(schema.REJECTS)
        if clips_sha256 is not None:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), REJECTS_OF: clips_sha256})
        self.fs.write_parquet("rejects.parquet", table)

    @staticmethod
    def rejects_belong(rejects: pa.Table, clips_sha256: str) -> bool:
        """Whether ``rejects`` (as ``rejects()`` read them) belong to the clip table of digest
        ``clips_sha256``: untagged rejects (written before the tag, or none at all) are taken to."""
        tag = (rejects.schema.metadata or {}).get(REJECTS_OF.encode())
        return tag is None or tag.decode() == clips_sha256

    def rejects(self) -> pa.Table:
        if not self.fs.exists("rejects.parquet"):
            return schema.REJECTS.empty_table()
        return self.fs.read_parquet("rejects.parquet")

    # -- feature sets ----------------------------------------------------------------------
    def feature_set_names(self) -> list[str]:
        return [n for n in self.fs.ls("features") if self.fs.exists(f"features/{n}/zarr.json")]

    def feature_set(self, name: str) -> FeatureSet:
        if not self.fs.exists(f"features/{name}/zarr.json"):
            known = ", ".join(self.feature_set_names()) or "none"
            raise StoreError(f"{self.url}: no feature set {name!r} (known: {known})")
        return FeatureSet(self, name)

    def ensure_feature_set(self, name: str, attrs: dict[str, Any]) -> FeatureSet:
        """Create the set's group with ``attrs`` or check that an existing one has the same identity."""
        rel = f"features/{name}"
        if not self.fs.exists(f"{rel}/zarr.json"):
            # The group document, attributes included, in one atomic write: writers that create the
            # same new set at once all write the same bytes, and none sees a group without attrs.
            group_doc = {"zarr_format": 3, "node_type": "group", "attributes": attrs}
            self.fs.write_bytes_atomic(f"{rel}/zarr.json", json.dumps(group_doc, sort_keys=True, default=str).encode())
        existing = dict(self.fs.open_group(rel).attrs)
        if existing.get("identity") != attrs.get("identity"):
            raise StoreConflictError(
                f"feature set {name!r} in {self.url} was written by a different extractor identity; "
                "refusing to mix features"
            )
        return FeatureSet(self, name)

    def sets_for(self, extractor: str) -> list[FeatureSet]:
        """All feature sets written by extractor ``extractor``, newest first."""
        sets = [self.feature_set(n) for n in self.feature_set_names()]
        sets = [s for s in sets if s.attrs.get("extractor") == extractor]
        return sorted(sets, key=lambda s: s.attrs.get("created", ""), reverse=True)

    # -- failures and runs -----------------------------------------------------------------
    def record_failures(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            table = pa.Table.from_pylist(rows, schema=schema.FAILURES)
            self.fs.write_parquet(f"status/{new_id()}.parquet", table)

    def failures(self, active_only: bool = True) -> pa.Table:
        """Failure rows; ``active_only`` drops those whose clip has since committed with that fingerprint
        (per clip: the same inputs committed under another clip id do not make this clip readable)."""
        table = self.fs.read_parquet_dir("status", schema.FAILURES)
        if not active_only or table.num_rows == 0:
            return table
        committed: dict[str, dict[str, str]] = {}
        keep = []
        for row in table.select(["clip_id", "feature_set", "fingerprint"]).to_pylist():
            s = row["feature_set"]
            if s not in committed:
                committed[s] = self.feature_set(s).committed() if s in self.feature_set_names() else {}
            keep.append(committed[s].get(row["clip_id"]) != row["fingerprint"])
        return table.filter(pa.array(keep, pa.bool_()))

    def record_run(self, row: dict[str, Any]) -> None:
        self.fs.write_parquet(f"runs/{new_id()}.parquet", pa.Table.from_pylist([row], schema=schema.RUNS))

    def runs(self) -> pa.Table:
        return self.fs.read_parquet_dir("runs", schema.RUNS)

    # -- predictions (stages.predict) ------------------------------------------------------
    def write_predictions(self, run: str, video_id: str, table: pa.Table) -> str:
        """Replace the predictions of one media file by one run; returns the part's path in the store."""
        rel = f"predictions/{quote_name(run)}/{quote_name(video_id)}.parquet"
        self.fs.write_parquet(rel, table.select(schema.PREDICTIONS.names).cast(schema.PREDICTIONS))
        return rel

    def predictions(self, run: str) -> pa.Table:
        """Every media file's predictions by ``run`` (empty when it scored nothing here)."""
        return self.fs.read_parquet_dir(f"predictions/{quote_name(run)}", schema.PREDICTIONS)

    def write_media_sources(self, sources: Mapping[str, MediaSource]) -> None:
        """Record video id -> source for every video id this predict store holds: the whole record,
        earlier runs' ids included, because ``corpora.layouts.media.plan_media`` reads it to give each file
        its id again and never another file's (a subtitle file alone has no media, so the clip table
        cannot say where a video came from)."""
        doc = {vid: {"path": s.path, "sha256": s.sha256} for vid, s in sources.items()}
        self.fs.write_bytes_atomic(MEDIA_SOURCES, json.dumps(doc, indent=1, sort_keys=True).encode())

    def media_sources(self) -> dict[str, MediaSource]:
        """video id -> its source, for every video id this predict store holds: the record, and the
        ids that only a predictions part names, with the part's ``media`` as path (stores written
        before the record kept every run's ids held only the latest run's, a bare path each). Parts
        of recorded ids are not read, so a store whose record is whole costs one listing per run."""
        record = self.fs.read_json(MEDIA_SOURCES, "media source record") if self.fs.exists(MEDIA_SOURCES) else {}
        sources = {vid: self._record_entry(vid, value) for vid, value in record.items()}
        recorded = {f"{quote_name(vid)}.parquet" for vid in sources}
        for run in self.fs.ls("predictions"):
            for name in self.fs.ls(f"predictions/{run}"):
                if name.endswith(".parquet") and not name.startswith(".") and name not in recorded:
                    part = self.fs.read_parquet(f"predictions/{run}/{name}").select(["video_id", "media"])
                    for vid, media in zip(part.column("video_id").to_pylist(), part.column("media").to_pylist()):
                        sources.setdefault(vid, MediaSource(media or ""))
        return sources

    def _record_entry(self, vid: str, value: Any) -> MediaSource:
        """One entry of the record: ``{"path", "sha256"}``, or a bare path (the record before hashes)."""
        if isinstance(value, str):
            return MediaSource(value)
        if isinstance(value, dict) and isinstance(value.get("path"), str) \
                and isinstance(value.get("sha256"), (str, type(None))):
            return MediaSource(value["path"], value["sha256"])
        raise StoreError(f"{self.fs.path(MEDIA_SOURCES)}: video {vid!r} has no source path and hash but {value!r}")

    # -- listings --------------------------------------------------------------------------
    def view_names(self) -> list[str]:
        return [n for n in self.fs.ls("aligned") if self.fs.exists(f"aligned/{n}/view.json")]

    def report_names(self) -> list[str]:
        return [n for n in self.fs.ls("reports") if not n.startswith(".")]
