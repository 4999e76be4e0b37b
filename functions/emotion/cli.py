"""The ``emotion`` command line: analyze, video, serve, models, eval-classify, eval-detect, bench, train."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from emotion.core.errors import EmotionError


def _write_json(obj: object, path: str | None) -> None:
    text = json.dumps(obj, indent=2)
    if path and path != "-":
        Path(path).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)


def cmd_analyze(args: argparse.Namespace) -> int:
    from emotion.core.annotate import annotate
    from emotion.core.engine import analyze
    from emotion.core.imageio import decode_image, encode_image
    from emotion.settings import get_settings

    results: list[dict] = []
    status = 0
    for index, image in enumerate(args.images):
        path = Path(image)
        try:
            data = path.read_bytes()
            result = analyze(data, classifier=args.classifier, min_face=args.min_face, max_faces=args.max_faces)
        except (OSError, EmotionError) as exc:
            message = exc.message if isinstance(exc, EmotionError) else str(exc)
            code = exc.code if isinstance(exc, EmotionError) else "unreadable_file"
            print(f"emotion: {image}: {message}", file=sys.stderr)
            results.append({"file": image, "error": {"code": code, "message": message}})
            status = 1
            continue
        results.append({"file": image, **result.model_dump()})
        if args.annotate:
            settings = get_settings()
            out = Path(args.annotate)
            if len(args.images) > 1:  # one annotated file per input: OUT_STEM-<index>-<name>.jpg
                out = out.with_name(f"{out.stem}-{index}-{path.stem}{out.suffix or '.jpg'}")
            bgr = decode_image(data, settings.max_pixels, settings.max_side)
            fmt = "png" if out.suffix.lower() == ".png" else "jpeg"
            out.write_bytes(encode_image(annotate(bgr, result), fmt))
    _write_json(results[0] if len(results) == 1 else results, args.json)
    return status


def cmd_models(args: argparse.Namespace) -> int:
    from emotion.settings import get_settings
    from model.fetch import FetchError, fetch_models
    from model.manifest import load_manifest

    settings = get_settings()
    if args.models_command == "list":
        manifest = load_manifest()
        rows = []
        for spec in manifest.models:
            path = settings.model_dir / spec.file
            rows.append({"name": spec.name, "role": spec.role, "version": spec.version, "file": spec.file,
                         "labels": spec.labels, "licence": spec.licence, "present": path.is_file()})
        _write_json({"model_dir": str(settings.model_dir), "models": rows}, None)
        return 0
    dest = Path(args.dest) if args.dest else settings.model_dir
    source = Path(args.source) if args.source else None
    try:
        results = fetch_models(dest, source, args.names or None)
    except FetchError as exc:
        print(f"emotion: {exc}", file=sys.stderr)
        return 2
    _write_json({"model_dir": str(dest), "fetched": [
        {"name": r.name, "path": str(r.path), "action": r.action, "source": r.source} for r in results]}, None)
    return 0


def cmd_eval_classify(args: argparse.Namespace) -> int:
    from model.evaluate import evaluate_classifier

    report = evaluate_classifier(Path(args.dir), classifier=args.classifier, limit=args.limit,
                                 align=args.align)
    _write_json(report, args.json)
    return 0


def cmd_eval_detect(args: argparse.Namespace) -> int:
    from model.evaluate import evaluate_detector

    report = evaluate_detector(Path(args.images_dir), Path(args.gt), max_side=args.max_side)
    _write_json(report, args.json)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from model.bench import run_bench

    report = run_bench(classifier=args.classifier, repeats=args.repeats, modes=args.threads)
    _write_json(report, args.json)
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from emotion.core.video import analyze_video_file

    fps = None if args.fps == "all" else float(args.fps)
    result = analyze_video_file(Path(args.video), fps=fps, classifier=args.classifier,
                                annotate_path=Path(args.annotate) if args.annotate else None,
                                progress=sys.stderr.isatty())
    _write_json(result.model_dump(), args.json)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from emotion.api.server import serve

    serve(host=args.host, port=args.port)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from model.training.train import main as train_main

    return train_main(args.rest)


def cmd_export(args: argparse.Namespace) -> int:
    from model.training.export import main as export_main

    return export_main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emotion", description="Facial-emotion recognition.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("analyze", help="detect faces and classify their emotions in images")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", metavar="PATH", help="write the result JSON here instead of stdout")
    p.add_argument("--annotate", metavar="PATH", help="write the annotated image here (.jpg or .png)")
    p.add_argument("--classifier", help="classifier name from the manifest (emotion models list)")
    p.add_argument("--min-face", type=int, default=None, help="drop faces smaller than this (px)")
    p.add_argument("--max-faces", type=int, default=None)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("video", help="track faces through a video and classify their emotions over time")
    p.add_argument("video", metavar="VIDEO")
    p.add_argument("--fps", default="5", help="frames sampled per second, or 'all' (default 5)")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--annotate", metavar="OUT.mp4", help="write an annotated MP4 (source size and frame rate)")
    p.add_argument("--classifier")
    p.set_defaults(func=cmd_video)

    p = sub.add_parser("serve", help="run the HTTP API and web page locally (embedded storage and worker)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("models", help="list or fetch the ONNX models")
    msub = p.add_subparsers(dest="models_command", required=True)
    f = msub.add_parser("fetch", help="copy from a mirror (--from) or download; verify sha256")
    f.add_argument("names", nargs="*", help="model names (default: all)")
    f.add_argument("--from", dest="source", metavar="DIR", help="local mirror, e.g. ../shared/models")
    f.add_argument("--dest", metavar="DIR", help="model directory (default: EMOTION_MODEL_DIR)")
    msub.add_parser("list", help="models in the manifest and whether they are present")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("eval-classify", help="accuracy on DIR/<label>/*.png|jpg face crops; prints JSON")
    p.add_argument("dir")
    p.add_argument("--classifier")
    p.add_argument("--limit", type=int, default=0, help="at most this many images per class (0: all)")
    p.add_argument("--align", choices=["auto", "never"], default="auto",
                   help="auto: detect on each crop for landmarks, fall back to the whole crop")
    p.add_argument("--json", metavar="PATH")
    p.set_defaults(func=cmd_eval_classify)

    p = sub.add_parser("eval-detect", help="AP50 of the detector against a ground-truth CSV; prints JSON")
    p.add_argument("images_dir")
    p.add_argument("--gt", required=True, help="CSV with columns image,x,y,w,h[,invalid]")
    p.add_argument("--max-side", type=int, default=None, help="detection size (default: the setting; 0: full)")
    p.add_argument("--json", metavar="PATH")
    p.set_defaults(func=cmd_eval_detect)

    p = sub.add_parser("bench", help="latency, cold start and memory figures; prints JSON")
    p.add_argument("--classifier")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", choices=["single", "all", "both"], default="both")
    p.add_argument("--json", metavar="PATH")
    p.set_defaults(func=cmd_bench)
    # train/export hand every argument (and --help) to model.training, which owns their options.
    p = sub.add_parser("train", add_help=False, help="train a classifier: emotion train CONFIG [options] (train extra)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", add_help=False, help="export a checkpoint to ONNX: emotion export --help")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command in ("train", "export"):
        args.rest = [*unknown, *args.rest]  # model.training parses its own options
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except EmotionError as exc:
        print(f"emotion: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
