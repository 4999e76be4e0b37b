"""ONNX Runtime sessions: execution providers = requested ∩ available (CPU last), created once per process."""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"


def resolve_providers(requested: str | list[str]) -> list[str]:
    """Keep the requested providers this onnxruntime build has, in order; CPU is always the last resort."""
    wanted = [p.strip() for p in requested.split(",")] if isinstance(requested, str) else list(requested)
    wanted = [p for p in wanted if p]
    available = set(ort.get_available_providers())
    chosen = [p for p in wanted if p in available]
    missing = [p for p in wanted if p not in available]
    if CPU not in chosen:
        chosen.append(CPU)
    if missing:
        log.warning("execution providers %s are not available here; using %s", missing, chosen)
    else:
        log.info("execution providers: %s", chosen)
    return chosen


def create_session(model: Path | bytes, providers: list[str], threads: int = 0,
                   qdq_graph: bool = False) -> ort.InferenceSession:
    """One inference session; ``threads`` = 0 lets onnxruntime use every core. ``qdq_graph``: the model is an int8
    graph in QDQ form (manifest ``qdq_graph``), whose Q/DQ pairs must be fused at load time."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Memory patterns are planned per input shape; with every image its own size they only pile up
    # (peak RSS on the scene photos 307 -> 277 MB, same speed).
    options.enable_mem_pattern = False
    options.log_severity_level = 3
    # Keeps onnxruntime from duplicating DequantizeLinear in front of the int8 MobileFaceNet's rewritten
    # PRelus (model/optimize.py): about 8% faster there, outputs unchanged; no effect on float graphs. A QDQ
    # graph needs that pass: it is what turns its Q/DQ pairs into integer kernels.
    options.add_session_config_entry("session.disable_quant_qdq", "0" if qdq_graph else "1")
    # Spinning worker threads held both cores between calls and delayed the web server's event loop
    # (engine 27-30 ms without spinning vs 57-79 ms with it, measured through `emotion serve`).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=providers)
