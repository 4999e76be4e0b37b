"""The ``emotion`` command line: analyze, video, serve, models, eval-classify, eval-detect, bench, train, export."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from emotion import __version__
from emotion.core.errors import EmotionError
from emotion.paths import IMAGE_SUFFIXES, expand_inputs

# OpenCV prints its own "[ WARN:0@0.1] global cap.cpp ..." lines to stderr; our messages say what went wrong.
# The variable must be set before cv2 is first imported (every command imports it lazily, after this).
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

EXIT_CODES = "exit status: 0 all inputs done, 1 some inputs failed (each is reported), 2 usage error or the " \
             "command cannot run here (missing models, missing extra, an output folder that cannot be made), " \
             "141 stdout was closed early (e.g. | head)"
TRAIN_EXTRA = "pip install -e '.[train]' in a checkout (or pip install 'emotion-service[train]')"


class UsageError(Exception):
    """A problem with how the command was called, or an output it cannot write (exit status 2, one line)."""


def _output_path(path: Path, what: str) -> Path:
    """``path`` with its folder created; a folder that cannot be made is a one-line UsageError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot create the folder {path.parent} ({exc.strerror or exc})") from None
    if path.is_dir():
        raise UsageError(f"{what} {path}: is a folder; give a file name")
    return path


def _show_progress(asked: bool | None) -> bool:
    """A progress bar on stderr: when asked (--progress / --no-progress), else only when stderr is a terminal."""
    return sys.stderr.isatty() if asked is None else asked


# --------------------------------------------------------------------------------------- argument types
def _pad_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 10.0:
        raise argparse.ArgumentTypeError(f"--pad must be between 0 and 10, not {text}")
    return value


def _int_at_least(low: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{what} must be at least {low}, not {value}")
        return value

    return parse


def _port(text: str) -> int:
    value = _int_at_least(0, "the port")(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"the port must be at most 65535, not {value}")
    return value


def _fps(text: str) -> float | None:
    """A positive number of frames per second, or 'all' (every frame, returned as None)."""
    if text.strip().lower() == "all":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of frames per second or 'all'") from None
    if not 0 < value <= 1000:
        raise argparse.ArgumentTypeError(f"frames per second must be above 0 and at most 1000, not {text}")
    return value


def _annotate_path(text: str) -> Path:
    """An output image path whose extension picks the format: .jpg/.jpeg, .png or .webp."""
    from emotion.analyzer import ANNOTATE_FORMATS

    path = Path(text)
    if path.suffix.lower() not in ANNOTATE_FORMATS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the extension picks the format; use .jpg, .png or .webp (not {path.suffix or 'none'!r})"
        )
    return path


def _mp4_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() != ".mp4":
        raise argparse.ArgumentTypeError(f"{text!r}: the annotated video is written as MP4; name it *.mp4")
    return path


def _classifier_names() -> list[str]:
    from emotion.core.manifest import load_manifest

    return load_manifest().names("classifier")


# ------------------------------------------------------------------------------------------------ output
def _write_json(obj: object, path: str | None) -> None:
    """Pretty JSON to PATH (its folder created), or to stdout when PATH is None or '-'."""
    text = json.dumps(obj, indent=2)
    if path and path != "-":
        target = _output_path(Path(path), "--json")
        try:
            target.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--json {path}: cannot write it ({exc.strerror or exc})") from None
    else:
        print(text)


def _print_line(obj: object) -> None:
    """One JSON Lines record on stdout, flushed so a pipe sees each result as soon as it is ready."""
    _emit(json.dumps(obj, separators=(",", ":")))


def _emit(text: str, stream: TextIO | None = None) -> None:
    """A line on stdout (or ``stream``), flushed, written around any progress bar on stderr."""
    from tqdm import tqdm

    out = stream or sys.stdout
    tqdm.write(text, file=out)
    out.flush()


class AnalyzeTable:
    """``emotion analyze --format table``: one row per face (FILE, FACE, EMOTION, BOX, NEXT), printed as each
    image is done; the FILE column is as wide as the longest input name, up to 40 characters. A face whose
    ``quality.reliable`` is false says so at the end of its row."""

    HEADER = ("FILE", "FACE", "EMOTION", "BOX (x,y wxh)", "NEXT")

    def __init__(self, names: list[str]):
        self.file_width = max(len(self.HEADER[0]), min(40, max((len(n) for n in names), default=0)))
        self.widths = (self.file_width, 4, 15, 20)
        self._row(*self.HEADER)

    def _row(self, *cells: str) -> None:
        padded = [cell.ljust(width) for cell, width in zip(cells, self.widths, strict=False)]
        _emit("  ".join([*padded, *cells[len(self.widths):]]).rstrip())

    def _name(self, name: str) -> str:
        return name if len(name) <= self.file_width else "…" + name[-(self.file_width - 1):]

    def add(self, record: dict) -> None:
        name = self._name(record["file"])
        if "error" in record:
            self._row(name, "-", "error: " + record["error"]["message"])
            return
        if not record["faces"]:
            self._row(name, "-", "no face found")
            return
        for i, face in enumerate(record["faces"]):
            ranked = sorted(face["emotions"].items(), key=lambda kv: -kv[1])
            b = face["box"]
            unreliable = (face.get("quality") or {}).get("reliable") is False
            self._row(name if i == 0 else "", str(i + 1), f"{ranked[0][0]} {ranked[0][1]:.0%}",
                      f"{b['x']},{b['y']} {b['width']}x{b['height']}",
                      ", ".join(f"{k} {v:.0%}" for k, v in ranked[1:3])
                      + ("  (unreliable: too dark, blurred or small)" if unreliable else ""))


# ---------------------------------------------------------------------------------------------- commands
def cmd_analyze(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from emotion.analyzer import Analyzer
    from emotion.tables import csv_header, csv_lines

    fmt = args.format or ("table" if sys.stdout.isatty() and not args.json else "jsonl")
    if args.annotate:
        _output_path(args.annotate, "--annotate")
    analyzer = Analyzer(classifier=args.classifier, min_face=args.min_face, max_faces=args.max_faces)
    inputs = list(expand_inputs(args.images))
    table = AnalyzeTable([name for name, _ in inputs]) if fmt == "table" and not args.json else None
    csv_out = fmt == "csv" and not args.json
    if csv_out:
        _emit(csv_header().rstrip("\n"))
    csv_file: TextIO | None = None
    if args.csv:
        csv_file = open(_output_path(args.csv, "--csv"), "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed below
        csv_file.write(csv_header())
    collected = bool(args.json) or fmt == "json"
    results: list[dict] = []
    status = 0
    bar = tqdm(total=len(inputs), unit="image", desc="analyze", leave=False, file=sys.stderr,
               disable=len(inputs) < 2 or not _show_progress(args.progress))
    with bar:
        for index, (name, path) in enumerate(inputs):
            try:
                if path is None:
                    raise FileNotFoundError(f"no such file, folder or glob match (folders are searched for "
                                            f"{', '.join(IMAGE_SUFFIXES)})")
                result = analyzer.analyze(path)
            except (OSError, EmotionError) as exc:
                if isinstance(exc, EmotionError) and exc.status >= 500:
                    raise  # the set-up, not this input (e.g. models missing): exit 2 with the message
                message = exc.message if isinstance(exc, EmotionError) else (exc.strerror or str(exc))
                code = exc.code if isinstance(exc, EmotionError) else "unreadable_file"
                if table is None:  # the table has a row for it
                    _emit(f"emotion: {name}: {message}", sys.stderr)
                record: dict = {"file": name, "error": {"code": code, "message": message}}
                status = 1
            else:
                record = {"file": name, **result.model_dump()}
                if args.annotate:
                    out: Path = args.annotate
                    if len(inputs) > 1:  # one annotated file per input: OUT_STEM-<index>-<name>.<ext>
                        out = out.with_name(f"{out.stem}-{index}-{path.stem}{out.suffix}")
                    try:
                        analyzer.annotate(path, result=result, path=out)
                    except OSError as exc:
                        raise UsageError(f"--annotate {out}: cannot write it ({exc.strerror or exc})") from None
            bar.update(1)
            if csv_file is not None:
                csv_file.write(csv_lines(name, record))
                csv_file.flush()
            if collected:
                results.append(record)
            elif table is not None:
                table.add(record)
            elif csv_out:
                _emit(csv_lines(name, record).rstrip("\n"))
            else:
                _print_line(record)
    if csv_file is not None:
        csv_file.close()
    if args.json:
        _write_json(results, args.json)
    elif fmt == "json":
        _write_json(results, None)
    return status


def cmd_batch(args: argparse.Namespace) -> int:
    from emotion.client import Client

    client = Client(args.url, args.api_key or os.environ.get("EMOTION_API_KEY") or None)
    result = client.analyze_collection(args.paths, progress=_show_progress(args.progress),
                                       out=args.out)
    summary = result.summary
    _write_json({"job_id": result.job_id, "out": str(args.out), **{k: summary[k] for k in (
        "images", "analysed", "faces", "images_without_face", "failed", "failures_by_code", "dominant_emotions")}},
        None)
    return 1 if summary["failed"] else 0


def cmd_video(args: argparse.Namespace) -> int:
    from emotion.core.video import VideoOptions, analyze_video_file

    if args.annotate:
        _output_path(args.annotate, "--annotate")
    if args.json and args.json != "-":
        _output_path(Path(args.json), "--json")
    try:
        result = analyze_video_file(Path(args.video), fps=args.fps, classifier=args.classifier,
                                    annotate_path=args.annotate, progress=_show_progress(args.progress),
                                    options=VideoOptions(min_face=args.min_face))
    except (OSError, EmotionError) as exc:
        if isinstance(exc, EmotionError) and exc.status >= 500:
            raise
        print(f"emotion: {args.video}: {exc.message if isinstance(exc, EmotionError) else exc}", file=sys.stderr)
        return 1
    if args.json:
        _write_json(result.model_dump(), args.json)
    else:
        _print_line({"file": args.video, **result.model_dump()})
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from emotion.core.manifest import load_manifest
    from emotion.model.fetch import FetchError, fetch_models
    from emotion.settings import get_settings

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
    if args.json:
        _write_json({"model_dir": str(dest), "fetched": [
            {"name": r.name, "path": str(r.path), "action": r.action, "source": r.source} for r in results]},
            args.json)
    else:  # one line per model, its fp32 form beside it: what a person running `make run` wants to see
        manifest = load_manifest()
        fetched = {r.name for r in results}
        files: dict[tuple[str, str], list[str]] = {}
        for r in results:
            form_of = manifest.get(r.name).form_of
            shown = form_of if form_of is not None and form_of in fetched else r.name
            files.setdefault((shown, r.action), []).append(r.path.name)
        for (name, action), names in files.items():
            print(f"model {name}: {action}, sha256 verified ({', '.join(names)})")
    return 0


def cmd_eval_classify(args: argparse.Namespace) -> int:
    from emotion.model.evaluate import evaluate_classifier

    if args.group_by and not args.labels:
        print("emotion: --group-by needs --labels CSV", file=sys.stderr)
        return 2
    try:
        report = evaluate_classifier(
            Path(args.dir), classifier=args.classifier, limit=args.limit, pad=args.pad, align=args.align,
            labels_csv=Path(args.labels) if args.labels else None, image_column=args.image_column,
            label_column=args.label_column, group_by=args.group_by, validation_split_by=args.validation_split_by,
            only_shared=args.only_shared, classifier_file=Path(args.classifier_file) if args.classifier_file else None)
    except (OSError, ValueError) as exc:
        print(f"emotion: {exc}", file=sys.stderr)
        return 2
    _write_json(report, args.json)
    return 0


def cmd_eval_detect(args: argparse.Namespace) -> int:
    from emotion.model.evaluate import evaluate_detector

    report = evaluate_detector(Path(args.images_dir), Path(args.gt), max_side=args.max_side)
    _write_json(report, args.json)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from emotion.model.bench import run_bench

    report = run_bench(classifier=args.classifier, repeats=args.repeats, modes=args.threads)
    _write_json(report, args.json)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from emotion.api.server import serve

    if args.port and not _port_free(args.host, args.port):
        print(f"emotion: {args.host}:{args.port} is already in use (another `emotion serve` or `make run`?). "
              f"Stop it, or pick another port: emotion serve --port {args.port + 1}, or make run PORT={args.port + 1}",
              file=sys.stderr)
        return 2
    serve(host=args.host, port=args.port)
    return 0


def _port_free(host: str, port: int) -> bool:
    """Whether the server could listen there (checked with the same SO_REUSEADDR uvicorn sets)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def cmd_train(args: argparse.Namespace) -> int:
    from emotion.model.training.recipes import train_main

    return train_main(args.rest)


def cmd_export(args: argparse.Namespace) -> int:
    from emotion.model.training.recipes import export_main

    return export_main(args.rest)


# ------------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emotion", description="Facial-emotion recognition: faces, boxes and emotions in photos and videos.",
        epilog=EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"emotion {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (and OpenCV's log) to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    classifiers = _classifier_names()
    classifier_help = "emotion classifier (default: the EMOTION_CLASSIFIER setting)"

    p = sub.add_parser(
        "analyze", help="faces and their emotions in images (a table on a terminal, JSON Lines in a pipe)",
        description="Detect faces and classify their emotions. On a terminal, prints a table (one row per face); "
                    "otherwise JSON Lines: one result per input on stdout, as "
                    '{"file": ..., "image", "faces", "models", "timings_ms"} or {"file": ..., '
                    '"error": {"code", "message"}}. --format picks either, or one JSON array.',
        epilog=EXIT_CODES,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, folders (searched recursively for image extensions) or globs ('**' recurses)")
    p.add_argument("--json", metavar="PATH", help="write one JSON array of all results to PATH instead of stdout "
                                                  "('-': stdout); its folder is created")
    p.add_argument("--format", choices=["table", "json", "jsonl", "csv"], default=None,
                   help="stdout: table (one row per face), json (one array, printed at the end), jsonl (one line "
                        "per input, as each is done) or csv (one row per face, the columns of a collection's "
                        "faces.csv); default: table on a terminal, jsonl otherwise")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar on stderr over several inputs (default: only when stderr is a terminal)")
    p.add_argument("--annotate", metavar="PATH", type=_annotate_path,
                   help="write the image with boxes and labels here (its folder is created); the extension picks "
                        "the format (.jpg, .png, .webp); with several inputs, one file each: "
                        "PATH_STEM-<n>-<name>.<ext>")
    p.add_argument("--classifier", choices=classifiers, help=classifier_help)
    p.add_argument("--csv", metavar="PATH", type=Path,
                   help="also write one CSV row per face to PATH (an image without a face: one row with empty face "
                        "columns; a failed image: one row with its error code); its folder is created")
    p.add_argument("--min-face", type=_int_at_least(0, "--min-face"), default=None, metavar="PX",
                   help="drop faces smaller than this many pixels (default: the EMOTION_MIN_FACE setting)")
    p.add_argument("--max-faces", type=_int_at_least(1, "--max-faces"), default=None, metavar="N",
                   help="keep at most the N most confident faces (default: the EMOTION_MAX_FACES setting)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser(
        "batch", help="many images through a deployed service in one collection job (faces.csv at the end)",
        description="Send images, folders (searched recursively) or one ZIP/tar archive to a deployed service "
                    "as one collection job, show its progress, and write results.jsonl, faces.csv and "
                    "summary.json to --out. Prints a JSON summary on stdout.",
        epilog=EXIT_CODES,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders, or one .zip / .tar archive")
    p.add_argument("--url", required=True, help="the service's base URL (the stack's ApiUrl, or http://127.0.0.1:8000)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="sent as x-api-key (default: the EMOTION_API_KEY environment variable)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the three result files")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar on stderr (default: only when stderr is a terminal)")
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser(
        "video", help="track faces through a video and classify their emotions over time",
        description="Track faces through a video: tracks, persons and their emotions over time. Prints one JSON "
                    "line on stdout (or writes --json PATH).",
        epilog=EXIT_CODES,
    )
    p.add_argument("video", metavar="VIDEO", help="a video file (MP4, MOV, WebM, AVI, MKV)")
    p.add_argument("--fps", type=_fps, default=5.0, metavar="N|all",
                   help="frames sampled per second, or 'all' for every frame (default: 5)")
    p.add_argument("--min-face", type=_int_at_least(0, "--min-face"), default=None, metavar="PX",
                   help="ignore faces smaller than PX pixels (the box's smaller side, in the video's pixels; "
                        "default: EMOTION_MIN_FACE, 0)")
    p.add_argument("--json", metavar="PATH", help="write the result (pretty JSON) to PATH instead of stdout")
    p.add_argument("--annotate", metavar="OUT.mp4", type=_mp4_path,
                   help="write an annotated H.264 MP4 that browsers play (source size and frame rate; "
                        "boxes labelled with person ids); its folder is created")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar on stderr (default: only when stderr is a terminal)")
    p.add_argument("--classifier", choices=classifiers, help=classifier_help)
    p.set_defaults(func=cmd_video)

    p = sub.add_parser("serve", help="run the HTTP API and web page locally (embedded storage and worker)",
                       epilog="exit status: 0 stopped with Ctrl+C, 2 the address cannot be used")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port; 0 picks a free one (default: 8000)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("models", help="list or fetch the ONNX models")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    f = msub.add_parser("fetch", help="copy from a mirror (--from) or download; verify sha256")
    f.add_argument("names", nargs="*", metavar="NAME", help="model names (default: all)")
    f.add_argument("--from", dest="source", metavar="DIR", help="local mirror, e.g. ../shared/models")
    f.add_argument("--dest", metavar="DIR", help="model directory (default: the EMOTION_MODEL_DIR setting)")
    f.add_argument("--json", metavar="PATH", help="write what was fetched as JSON to PATH ('-': stdout) instead of "
                                                  "one line per model")
    msub.add_parser("list", help="models in the manifest and whether they are present (JSON)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("eval-classify", help="accuracy on DIR/<label>/*.png|jpg face crops; prints JSON")
    p.add_argument("dir", metavar="DIR", help="folder with one sub-folder of face crops per emotion label")
    p.add_argument("--classifier", choices=classifiers, help=classifier_help)
    p.add_argument("--limit", type=_int_at_least(0, "--limit"), default=0, metavar="N",
                   help="at most N images per class (default: 0, all)")
    p.add_argument("--pad", type=_pad_fraction, default=0.0, metavar="F",
                   help="place each crop in a black frame of F x its size on every side (a face in a photo); "
                   "default 0: the crop as sent")
    p.add_argument("--align", choices=["auto", "never"], default="auto",
                   help="auto: the engine's own path, detect -> align -> classify, no face = wrong; never: the "
                   "whole crop is the face, no detection (default: auto)")
    p.add_argument("--labels", metavar="CSV", help="labels from a CSV (image paths relative to DIR) instead of "
                   "sub-folder names; rows with an empty label are left out")
    p.add_argument("--image-column", default="image", metavar="COLUMN", help="CSV column of image paths")
    p.add_argument("--label-column", default="label", metavar="COLUMN", help="CSV column of labels")
    p.add_argument("--group-by", metavar="COLUMN", help="also report accuracy per value of this CSV column")
    p.add_argument("--validation-split-by", metavar="COLUMN",
                   help="only the held-out groups of this CSV column (sorted names, every 5th), e.g. movie")
    p.add_argument("--only-shared", action="store_true",
                   help="leave out crops whose label the classifier lacks (default: they count as wrong)")
    p.add_argument("--classifier-file", metavar="ONNX", help="run this graph under --classifier's manifest entry "
                   "(labels, preprocessing): a candidate not shipped yet, e.g. an fp32 export of a checkpoint")
    p.add_argument("--json", metavar="PATH", help="write the report to PATH instead of stdout")
    p.set_defaults(func=cmd_eval_classify)

    p = sub.add_parser("eval-detect", help="AP50 of the detector against a ground-truth CSV; prints JSON")
    p.add_argument("images_dir", metavar="IMAGES_DIR", help="folder of the images named in the CSV")
    p.add_argument("--gt", required=True, metavar="CSV", help="CSV with columns image,x,y,w,h[,invalid]")
    p.add_argument("--max-side", type=_int_at_least(0, "--max-side"), default=None, metavar="PX",
                   help="detection size (default: the EMOTION_DETECT_MAX_SIDE setting; 0: full size)")
    p.add_argument("--json", metavar="PATH", help="write the report to PATH instead of stdout")
    p.set_defaults(func=cmd_eval_detect)

    p = sub.add_parser("bench", help="latency, cold start and memory figures; prints JSON")
    p.add_argument("--classifier", choices=classifiers, help=classifier_help)
    p.add_argument("--repeats", type=_int_at_least(1, "--repeats"), default=30, metavar="N",
                   help="timed runs per figure (default: 30)")
    p.add_argument("--threads", choices=["single", "all", "both"], default="both",
                   help="onnxruntime threads: one, all cores, or both runs (default: both)")
    p.add_argument("--json", metavar="PATH", help="write the report to PATH instead of stdout")
    p.set_defaults(func=cmd_bench)

    # train/export hand every argument (and --help) to emotion.model.training, which owns their options.
    p = sub.add_parser("train", add_help=False,
                       help="train a classifier: emotion train CONFIG [options]; --help lists them (train extra)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", add_help=False,
                       help="export a checkpoint to ONNX; emotion export --help lists the options (train extra)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command in ("train", "export"):
        args.rest = [*unknown, *args.rest]  # emotion.model.training parses its own options
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.verbose:
        os.environ["OPENCV_LOG_LEVEL"] = "INFO"
    try:
        return int(args.func(args))
    except ModuleNotFoundError as exc:
        if args.command in ("train", "export") and (exc.name or "").split(".")[0] == "torch":
            print(f"emotion {args.command} needs PyTorch, from the train extra: {TRAIN_EXTRA}", file=sys.stderr)
            return 2
        raise
    except EmotionError as exc:
        print(f"emotion: {exc.message}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"emotion: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`emotion analyze ... | head`): stop quietly. Point stdout at devnull so the
        # interpreter's final flush does not raise again (the recipe in Python's signal module documentation).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
