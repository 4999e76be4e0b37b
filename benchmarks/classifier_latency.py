"""Single-thread latency of classifier ONNX graphs, measured side by side (prints JSON).

    .venv/bin/python benchmarks/classifier_latency.py OLD.onnx NEW.onnx [--rounds 30] [--batches 1 4 8]

Each graph gets a session with the engine's own options (``emotion.core.runtime.create_session``, one intra-op
thread, QDQ fusion on as for a manifest ``qdq_graph``). Runs are interleaved: every round times each (graph,
batch) case once, in an order rotated each round, so background load hits all cases alike. Reports the median
over rounds of ms per face, and each graph's ratio to the first graph's at the same batch size. Inputs are
uniform random in [-1, 1] of the graph's input shape; latency does not depend on the values.

To compare against an earlier shipped file: ``git show REV:model/mobilefacenet8.onnx > /tmp/old.onnx``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from emotion.core.cpu import cpu_info
from emotion.core.runtime import CPU, create_session


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("graphs", nargs="+", type=Path)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    a = ap.parse_args()
    sessions = {str(p): create_session(p, [CPU], threads=1, qdq_graph=True) for p in a.graphs}
    rng = np.random.default_rng(0)
    cases = []
    for path, sess in sessions.items():
        inp = sess.get_inputs()[0]
        item = [int(d) for d in inp.shape[1:]]
        for b in a.batches:
            cases.append((path, b, sess, inp.name, rng.uniform(-1, 1, (b, *item)).astype(np.float32)))
    for _, _, sess, name, x in cases:  # warm-up
        for _ in range(3):
            sess.run(None, {name: x})
    times: dict[tuple[str, int], list[float]] = {(c[0], c[1]): [] for c in cases}
    for r in range(a.rounds):
        for path, b, sess, name, x in cases[r % len(cases):] + cases[: r % len(cases)]:
            t = time.perf_counter()
            sess.run(None, {name: x})
            times[(path, b)].append((time.perf_counter() - t) * 1000 / b)
    first = str(a.graphs[0])
    report = {}
    for (path, b), ts in times.items():
        median = statistics.median(ts)
        report.setdefault(path, {})[f"batch{b}"] = {
            "ms_per_face": round(median, 3),
            "ratio_to_first": round(median / statistics.median(times[(first, b)]), 3),
        }
    print(json.dumps({"cpu": cpu_info(), "rounds": a.rounds, "threads": 1, "graphs": report}, indent=2))


if __name__ == "__main__":
    main()
