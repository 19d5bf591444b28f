"""ONNX Runtime as a CPU inference runtime: which runtime a config asks for, the on-disk cache of
exported graphs, and the sessions built from them.

Why: emoflow's EfficientNet-Lite0 runs in ONNX Runtime in 0.57-0.58x torch's CPU time per frame at
batch 1-4, 0.35x at 16 (docs/performance.md, "CNN inference runtime (issue 19)"). torch stays the
reference, the CUDA path and the fallback. fp32 only, so features agree with torch's to float
rounding (``TOLERANCE``) and the runtime can stay out of a feature set's identity, like the device.

The export happens at first use, never at install: its cost (0.6 s for the CNN, 3.3 s for MiniLM on
2 cores) is paid once per machine, and the file is keyed by everything that determines it (the
weights' sha256, the input size, the exporter and runtime versions), so an upgrade re-exports
instead of reusing a stale graph.
``onnxruntime`` and ``onnx`` (torch's TorchScript exporter needs it) are imported lazily: without
them ``auto`` falls back to torch and ``onnx`` says what is missing.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import model_validator

from features.extractors.base import ExtractorConfig
from store.fingerprint import cache_root, hash_obj
from store.fs import atomic_path
from store.runtime import resolve_device

log = logging.getLogger(__name__)

Runtime = Literal["auto", "torch", "onnx"]
#: max abs difference allowed between ONNX Runtime and torch outputs (fp32 both; EfficientNet-Lite0
#: features measured up to 1.2e-5 apart on real frames, where they reach 3.9)
TOLERANCE = 1e-4
OPSET = 17
#: how emoflow post-processes an export; a change re-exports every cached graph (2: omitted optional
#: inputs are dropped, ``drop_omitted_inputs``)
EXPORT_VERSION = "2"


def missing_onnx_package() -> str | None:
    """The first package the ONNX path needs that is missing; None when both are there.
    ``onnxruntime`` is imported (every session needs it next); ``onnx`` only serves an export, so it
    is looked up without the 0.1 s import that every run would otherwise pay."""
    try:
        importlib.import_module("onnxruntime")
    except ImportError:
        return "onnxruntime"
    try:
        found = importlib.util.find_spec("onnx") is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        found = False
    return None if found else "onnx"


class ModelRuntimeConfig(ExtractorConfig):
    """The config fields of an extractor whose model runs on a ``device`` in a ``runtime`` (both
    runtime fields, outside the identity), and their one check: ``onnx`` runs on the CPU only, so it
    cannot go with device ``cuda``."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    runtime: Runtime = "auto"

    @model_validator(mode="after")
    def _onnx_runs_on_the_cpu(self) -> ModelRuntimeConfig:
        if self.runtime == "onnx" and self.device == "cuda":
            raise ValueError("runtime 'onnx' runs on the CPU: use device 'cpu' or 'auto', or runtime 'torch' for CUDA")
        return self


def resolve_runtime(runtime: Runtime, device: str) -> Literal["torch", "onnx"]:
    """``auto`` → ONNX Runtime when its packages import and ``device`` resolves to the CPU, else
    torch; ``onnx`` without its packages is a clear error (the CPU is the only device it runs on)."""
    if runtime == "torch":
        return "torch"
    missing = missing_onnx_package()
    if runtime == "onnx":
        if missing:
            raise RuntimeError(
                f"runtime 'onnx' needs the {missing!r} package (pip install {missing}); runtime 'torch' does not"
            )
        return "onnx"
    if resolve_device(device).type != "cpu":
        return "torch"
    if missing:
        log.info("runtime auto: %r does not import, running torch", missing)
        return "torch"
    return "onnx"


def cache_dir() -> Path:
    """Exported graphs live in ``$EMOFLOW_CACHE_DIR/onnx`` (default ``~/.cache/emoflow/onnx``), next
    to the file-hash cache; deleting it only costs a re-export."""
    return cache_root() / "onnx"


def exporter_versions() -> dict[str, str]:
    """What besides the model determines an exported file: a change re-exports it."""
    import torch

    # read from the installed metadata: importing onnx only to read its version costs 0.1 s a run
    return {"torch": torch.__version__, "onnx": importlib.metadata.version("onnx"),
            "onnxruntime": importlib.metadata.version("onnxruntime"), "opset": str(OPSET), "export": EXPORT_VERSION}


def cache_path(name: str, key: dict[str, Any]) -> Path:
    """The cache file of model ``name`` for ``key`` (plus the exporter versions)."""
    return cache_dir() / f"{name}-{hash_obj({'key': key, 'versions': exporter_versions()}, 24)}.onnx"


def publish(path: Path, export: Callable[[Path], None]) -> None:
    """Run ``export(tmp)`` on a temporary file beside ``path``, then rename it over ``path``: a
    reader sees the old file or the whole new one, never a partial one, and two processes exporting
    at once each publish a complete (identical) file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, durable=False) as tmp:  # a lost cache file is only exported again
        export(Path(tmp))


def export_checked(
    module: Any, args: tuple[Any, ...], path: Path, *, inputs: list[str], output: str,
    dynamic_axes: dict[str, dict[int, str]], probe: dict[str, np.ndarray], reference: np.ndarray,
    what: str, where: np.ndarray | None = None, quiet: tuple[str, ...] = (),
) -> None:
    """Export ``module`` traced on ``args`` to ``path`` (torch's TorchScript exporter: the dynamo one
    needs onnxscript), then check that ONNX Runtime reproduces ``reference`` (torch's output on
    ``probe``, other inputs than the traced ones) within ``TOLERANCE``, over the ``where`` entries
    only when given, before the caller publishes the file. ``quiet``: exporter warnings (message
    patterns) the caller has checked are harmless."""
    import torch

    with warnings.catch_warnings():
        # the tracer notes shapes it fixes (the cache key holds them), torch that this exporter is the
        # legacy one (chosen: no onnxscript needed)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        for pattern in quiet:
            warnings.filterwarnings("ignore", pattern, UserWarning)
        torch.onnx.export(
            # eval(): export restores the module's mode afterwards, recursively, and a new wrapper is in
            # training mode: the process's shared model would come out of export in training mode
            module.eval(), args, str(path), dynamo=False, opset_version=OPSET, input_names=inputs,
            output_names=[output], dynamic_axes=dynamic_axes,
        )
    drop_omitted_inputs(path)
    diff = np.abs(session(path, 1).run(None, probe)[0] - reference)
    worst = float((diff if where is None else diff[where]).max())
    if not worst <= TOLERANCE:
        raise RuntimeError(f"ONNX export of {what} differs from torch by {worst:.2e}")


def drop_omitted_inputs(path: Path) -> None:
    """Remove the trailing empty-named inputs (omitted optional inputs) the exporter writes, e.g.
    every ``Pad``'s ``constant_value``. Same graph to ONNX, but ONNX Runtime only folds a ``Pad`` into
    the next ``Conv`` when no such input is listed: EfficientNet-Lite0's five stride-2 pads then stop
    costing a pad and two layout reorders each, 19% of its CPU time per frame (docs/performance.md)."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        while node.input and not node.input[-1]:
            node.input.pop()
    onnx.save(model, str(path))


def session(path: str | os.PathLike[str], threads: int) -> Any:
    """A CPU ``InferenceSession``: ``threads`` intra-op threads (the caller's thread is one of them),
    sequential execution, no spinning, so idle pool threads do not burn CPU that the pipeline's
    other extractor threads and processes could use."""
    import onnxruntime  # type: ignore[import-untyped]  # ships no type information

    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def cached_session(name: str, key: dict[str, Any], export: Callable[[Path], None], threads: int) -> Any:
    """A session on the cached export of ``name`` for ``key``, exported first when absent. A file
    that does not load (truncated by a full disk, a bad copy) is exported again, once."""
    path = cache_path(name, key)
    if not path.is_file():
        log.info("exporting %s to %s", name, path)
        publish(path, export)
    try:
        return session(path, threads)
    except Exception as exc:  # onnxruntime raises its own InvalidProtobuf/Fail, not a common base
        log.warning("cached ONNX graph %s does not load (%s): exporting it again", path, exc)
        publish(path, export)
        return session(path, threads)
