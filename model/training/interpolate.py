"""Weight interpolation between a fine-tuned run and the graph it started from (WiSE-FT).

A run that learns a new domain (``affect_train``) drifts away from what its start knew (FER+, film stills). Both
sit in one basin, so the weights ``(1 - w) x fine-tuned + w x start`` trade one for the other smoothly; ``w`` is
chosen on the validation sets only (the FER+ held-out slice of FER+ train, the SFEW validation films, the
``affect_train`` validation split), never on FER+ PublicTest.

``python -m emotion.model.training.interpolate FINAL.pt --weights 0 0.2 0.4`` prints each weight's validation
figures; ``--pick W --out PATH`` writes that mix as a checkpoint (temperature fitted afresh, as ``finetune``
does) that ``emotion export --checkpoint`` takes.

**Contempt prior.** Class-balanced draws make contempt as likely as any class in the colour faces a run sees (in the
data it is 10 %, in AffectNet's 1 %), and a net that learnt that prior calls ordinary smiling photos contempt.
``--contempt-shifts 0 1 2`` also prints each weight's figures with ``S`` nats taken from the contempt logit;
``--pick W --contempt-shift S`` bakes the shift into the head's bias before the temperature is fitted. The validation
sets hold no unmasked colour portrait that is not contempt, so each row also counts the contempt calls on the faces of
the WIDER dev photos (``wider_faces``, unlabelled, never trained on); ``--reference GRAPH.onnx`` prints the same
figures for a shipped graph (the default), which the shift rule compares with.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotion.model.training import VOCABULARY
from emotion.model.training.data import expand_path
from emotion.model.training.export8 import load_final
from emotion.model.training.faces import load_faces
from emotion.model.training.finetune import (
    EmotionNet8,
    average_into,
    fit_temperature,
    load_int8_export,
    measure_ranges,
    predict_logits,
    summarise,
)

VAL_SETS = ("ferplus_holdout", "sfew_val", "affect_val")
CHECK_SETS = ("wider_faces",)  # unlabelled unmasked colour faces (``faces.build_wider``): contempt calls only
CONTEMPT = VOCABULARY.index("contempt")


def start_weights(net: EmotionNet8, init_from: str) -> dict[str, torch.Tensor]:
    """The state of the graph or checkpoint a run started from, in ``net``'s layout."""
    start = copy.deepcopy(net)
    if init_from.endswith(".onnx"):
        load_int8_export(start, expand_path(init_from))
    else:
        start.load_state_dict(torch.load(expand_path(init_from), map_location="cpu", weights_only=False)["state_dict"])
    return start.state_dict()


def figures(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """``summarise`` plus 7-class accuracy (the contempt column left out) and the share of non-contempt faces
    called contempt."""
    rec: dict[str, Any] = summarise(logits, labels)
    basic = (labels >= 0) & (labels != CONTEMPT)
    if basic.any():
        z = np.delete(logits[basic], CONTEMPT, axis=1)
        y = labels[basic] - (labels[basic] > CONTEMPT)
        rec["basic7"] = round(float((z.argmax(1) == y).mean()), 4)
        rec["false_contempt"] = round(float((logits[basic].argmax(1) == CONTEMPT).mean()), 4)
    return rec


Weights = dict[str, torch.Tensor]


def _run_and_start(final: Path, faces: Path | None) -> tuple[EmotionNet8, Any, dict[str, Any], Weights, Weights,
                                                             dict[str, dict[str, np.ndarray]]]:
    """The run's net, config and checkpoint, its fine-tuned and starting weights, and the validation sets."""
    net, cfg, ck = load_final(final)
    start = start_weights(net, cfg.init_from or "")
    fine = {k: v.clone() for k, v in net.state_dict().items()}
    faces = faces or Path(cfg.faces_dir)
    sets = {name: load_faces(faces / f"{name}.npz") for name in (*VAL_SETS, *CHECK_SETS)
            if (faces / f"{name}.npz").exists()}
    return net, cfg, ck, fine, start, sets


def shift_contempt(logits: np.ndarray, shift: float) -> np.ndarray:
    """``logits`` [N,8] with ``shift`` nats taken from the contempt column."""
    out = logits.copy()
    out[:, CONTEMPT] -= shift
    return out


def contempt_recall(logits: np.ndarray, labels: np.ndarray) -> float | None:
    is_contempt = labels == CONTEMPT
    return round(float((logits[is_contempt].argmax(1) == CONTEMPT).mean()), 4) if is_contempt.any() else None


def set_figures(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """A labelled set's figures and contempt recall; an unlabelled one's count of faces called contempt."""
    if not (labels >= 0).any():
        return {"n": len(labels), "called_contempt": int((logits.argmax(1) == CONTEMPT).sum())}
    return {**figures(logits, labels), "contempt_recall": contempt_recall(logits, labels)}


def reference(onnx_path: Path, faces: Path) -> dict[str, Any]:
    """The same figures for a shipped graph (the default), through onnxruntime: what the shift rule compares with."""
    from emotion.model.training.export import session
    from emotion.model.training.export8 import ort_logits

    sess = session(onnx_path)
    out: dict[str, Any] = {"reference": str(onnx_path)}
    for set_name in (*VAL_SETS, *CHECK_SETS):
        if (faces / f"{set_name}.npz").exists():
            ds = load_faces(faces / f"{set_name}.npz")
            out[set_name] = set_figures(ort_logits(sess, ds["images"]), ds["labels"])
    return out


def sweep(final: Path, weights: list[float], faces: Path | None = None, shifts: tuple[float, ...] = (0.0,)
          ) -> tuple[list[dict[str, Any]], Any]:
    net, cfg, _, fine, start, sets = _run_and_start(final, faces)
    rows = []
    for w in weights:
        net.load_state_dict(fine)
        average_into(net, start, w)
        measure_ranges(net, cfg)
        logits = {n: predict_logits(net, ds["images"]) for n, ds in sets.items()}
        for s in shifts:
            shifted = {n: shift_contempt(z, s) for n, z in logits.items()}
            rows.append({"start_weight": w, "contempt_shift": s,
                         **{n: set_figures(z, sets[n]["labels"]) for n, z in shifted.items()}})
            print(json.dumps(rows[-1]), flush=True)
    return rows, (net, cfg, fine, start, sets)


def write_mix(final: Path, weight: float, out: Path, faces: Path | None = None, contempt_shift: float = 0.0
              ) -> dict[str, Any]:
    net, cfg, ck, _, start, sets = _run_and_start(final, faces)
    average_into(net, start, weight)
    with torch.no_grad():
        net.head.bias[CONTEMPT] -= contempt_shift
    measure_ranges(net, cfg)
    logits = {n: predict_logits(net, ds["images"]) for n, ds in sets.items() if n in VAL_SETS}
    temperature = fit_temperature(list(logits.values()), [sets[n]["labels"] for n in logits])
    net.temperature.fill_(temperature)
    metrics = {"event": "final", "start_weight": weight, "contempt_shift": contempt_shift, "temperature": temperature,
               **{n: summarise(z, sets[n]["labels"], temperature) for n, z in logits.items()}}
    torch.save({"state_dict": net.state_dict(), "config": cfg.model_dump(), "step": ck["step"],
                "temperature": temperature, "metrics": metrics, "start_weight": weight,
                "contempt_shift": contempt_shift}, out)
    return metrics


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="interpolate", description="Mix a fine-tuned run with its start (WiSE-FT).")
    ap.add_argument("final", help="the run's final.pt")
    ap.add_argument("--weights", type=float, nargs="*", default=[0.0, 0.2, 0.3, 0.4, 0.5])
    ap.add_argument("--faces-dir", help="cached faces (default: the run's)")
    ap.add_argument("--contempt-shifts", type=float, nargs="*", default=[0.0],
                    help="also print each weight's figures with these nats taken from the contempt logit")
    ap.add_argument("--pick", type=float, help="write this start weight's mix to --out")
    ap.add_argument("--contempt-shift", type=float, default=0.0, help="with --pick: nats taken from the contempt bias")
    ap.add_argument("--out", help="checkpoint path for --pick")
    ap.add_argument("--reference", help="also print these figures for a shipped graph (ONNX), e.g. the default")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    faces = Path(a.faces_dir) if a.faces_dir else None
    if a.reference:
        print(json.dumps(reference(Path(a.reference), faces or Path(load_final(Path(a.final))[1].faces_dir))))
    if a.pick is not None:
        if not a.out:
            ap.error("--pick needs --out")
        print(json.dumps(write_mix(Path(a.final), a.pick, Path(a.out), faces, a.contempt_shift), indent=2))
    else:
        sweep(Path(a.final), a.weights, faces, tuple(a.contempt_shifts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
