"""The `emotion` command as a person uses it: --version, folders and globs, JSON Lines, typed options with help,
quiet OpenCV, the annotate format, train/export without torch, and the documented exit codes."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import emotion
from emotion.cli import build_parser

EMOTION = shutil.which("emotion", path=str(Path(sys.executable).parent)) or "emotion"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = dict(os.environ if env is None else env)
    environment.pop("OPENCV_LOG_LEVEL", None)  # the command itself must keep OpenCV quiet
    return subprocess.run([EMOTION, *args], capture_output=True, text=True, timeout=600, env=environment)


def lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr


def test_version_prints_the_package_version():
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"emotion {emotion.__version__}"


def test_a_folder_is_searched_recursively_by_image_extension_and_globs_expand(model_dir, scenes, tmp_path):
    (tmp_path / "album" / "trip").mkdir(parents=True)
    shutil.copy(scenes / "fr_two_people.jpg", tmp_path / "album" / "two.jpg")
    shutil.copy(scenes / "fa_bbt3.jpg", tmp_path / "album" / "trip" / "bbt.JPEG")
    (tmp_path / "album" / "notes.txt").write_text("not a photo")
    (tmp_path / "album" / "trip" / "readme.md").write_text("# not a photo either")

    proc = run("analyze", str(tmp_path / "album"))
    assert proc.returncode == 0, proc.stderr
    records = lines(proc.stdout)
    # Sorted by path ("album/trip/..." before "album/two.jpg"), the text files skipped.
    assert [Path(r["file"]).name for r in records] == ["bbt.JPEG", "two.jpg"]
    assert [len(r["faces"]) for r in records] == [5, 2]

    # A quoted glob (the shell did not expand it) is expanded by the command; '**' recurses.
    proc = run("analyze", str(tmp_path / "album" / "**" / "*.JPEG"))
    assert proc.returncode == 0, proc.stderr
    assert [Path(r["file"]).name for r in lines(proc.stdout)] == ["bbt.JPEG"]

    # A folder without images and a glob matching nothing are failed inputs (exit 1), said in words.
    (tmp_path / "empty").mkdir()
    proc = run("analyze", str(tmp_path / "empty"), str(tmp_path / "*.png"), str(tmp_path / "album" / "two.jpg"))
    assert proc.returncode == 1
    records = lines(proc.stdout)
    assert [r.get("error", {}).get("code") for r in records] == ["unreadable_file", "unreadable_file", None]
    assert "no such file, folder or glob match" in proc.stderr
    no_traceback(proc)


def test_one_output_shape_json_lines_on_stdout_and_one_array_with_json(model_dir, scenes, tmp_path):
    one = run("analyze", str(scenes / "fr_two_people.jpg"))
    assert one.returncode == 0 and len(one.stdout.splitlines()) == 1  # one input: one line, same shape as many
    (record,) = lines(one.stdout)
    assert record["file"].endswith("fr_two_people.jpg") and len(record["faces"]) == 2

    two = run("analyze", str(scenes / "fr_two_people.jpg"), str(scenes / "fp_multiface.jpg"))
    assert [len(r["faces"]) for r in lines(two.stdout)] == [2, 6]

    target = tmp_path / "one.json"
    proc = run("analyze", str(scenes / "fr_two_people.jpg"), "--json", str(target))
    assert proc.returncode == 0 and proc.stdout == ""
    results = json.loads(target.read_text())
    assert isinstance(results, list) and len(results) == 1 and len(results[0]["faces"]) == 2

    assert "JSON Lines" in run("analyze", "--help").stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["video", "clip.mp4", "--fps", "abc"], "'abc' is not a number of frames per second or 'all'"),
        (["video", "clip.mp4", "--fps", "0"], "frames per second must be above 0"),
        (["video", "clip.mp4", "--min-face", "-3"], "--min-face must be at least 0"),
        (["analyze", "x.jpg", "--max-faces", "0"], "--max-faces must be at least 1"),
        (["analyze", "x.jpg", "--min-face", "ten"], "'ten' is not a whole number"),
        (["analyze", "x.jpg", "--classifier", "nope"], "invalid choice: 'nope' (choose from 'mobilefacenet'"),
        (["serve", "--port", "70000"], "the port must be at most 65535"),
        (["bench", "--threads", "many"], "invalid choice: 'many'"),
        (["analyze", "--no-such-option", "x.jpg"], "unrecognized arguments: --no-such-option"),
    ],
)
def test_bad_options_are_usage_errors_in_words(args, words):
    proc = run(*args)
    assert proc.returncode == 2 and words in proc.stderr, proc.stderr
    assert proc.stderr.startswith("usage: emotion")
    no_traceback(proc)


def _actions(parser: argparse.ArgumentParser, name: str = "emotion"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice, sub in action.choices.items():
                yield from _actions(sub, f"{name} {choice}")
        else:
            yield name, action


def test_every_option_has_help_text_and_every_classifier_option_lists_the_choices():
    missing = [f"{name} {action.dest}" for name, action in _actions(build_parser())
               if not action.help and action.dest != "rest"]  # train/export hand their options on
    assert not missing, missing
    classifier_actions = [a for _, a in _actions(build_parser()) if a.dest == "classifier"]
    assert len(classifier_actions) == 4  # analyze, video, eval-classify, bench
    assert all(a.choices and "mobilefacenet" in a.choices and "ferplus" in a.choices for a in classifier_actions)
    typed = {a.dest: a for _, a in _actions(build_parser()) if a.dest in ("fps", "min_face", "max_faces", "port")}
    assert all(callable(a.type) for a in typed.values()) and len(typed) == 4


def test_opencv_log_lines_are_silenced(model_dir, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("These are my notes, not a video.\n")
    proc = run("video", str(notes))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"emotion: {notes}: not a video OpenCV/FFmpeg can decode "
                                        "(expected e.g. MP4, MOV, AVI, WebM, MKV)"], proc.stderr
    # With --verbose, OpenCV's own log is shown (so the silence above is the command's doing).
    assert "WARN" in run("-v", "video", str(notes)).stderr


@pytest.mark.parametrize(
    ("name", "magic"),
    [("out.jpg", b"\xff\xd8\xff"), ("out.JPEG", b"\xff\xd8\xff"), ("out.png", b"\x89PNG"), ("out.webp", b"RIFF")],
)
def test_annotate_format_follows_the_extension(model_dir, scenes, tmp_path, name, magic):
    out = tmp_path / name
    proc = run("analyze", str(scenes / "fr_two_people.jpg"), "--annotate", str(out))
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data.startswith(magic)
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (1126, 661)


def test_annotate_with_another_extension_is_a_usage_error_before_any_work(scenes, tmp_path):
    out = tmp_path / "out.gif"
    proc = run("analyze", str(scenes / "fr_two_people.jpg"), "--annotate", str(out))
    assert proc.returncode == 2 and "use .jpg, .png or .webp (not '.gif')" in proc.stderr
    assert not out.exists() and proc.stdout == ""
    proc = run("video", "clip.mov", "--annotate", str(tmp_path / "out.avi"))
    assert proc.returncode == 2 and "name it *.mp4" in proc.stderr


@pytest.mark.parametrize("command", ["train", "export"])
def test_train_and_export_without_torch_say_what_to_install(command):
    # `sys.modules["torch"] = None` makes `import torch` fail exactly as it does where torch is not installed.
    code = "import sys; sys.modules['torch'] = None; from emotion.cli import main; sys.exit(main(sys.argv[1:]))"
    for args in ([command, "--help"], [command]):
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert f"emotion {command} needs PyTorch" in proc.stderr and ".[train]" in proc.stderr
        no_traceback(proc)


def test_exit_codes_are_documented_in_the_help_and_kept(model_dir, scenes, tmp_path):
    for args in (["--help"], ["analyze", "--help"], ["video", "--help"]):
        text = " ".join(run(*args).stdout.split())
        assert "0 all inputs done, 1 some inputs failed" in text and "2 usage error" in text, args
    assert run("analyze", str(scenes / "fr_two_people.jpg")).returncode == 0
    assert run("analyze", str(scenes / "fr_two_people.jpg"), str(tmp_path / "missing.jpg")).returncode == 1
    assert run("analyze").returncode == 2


def test_a_heic_photo_is_analysed(model_dir, scenes, tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif", reason="HEIC support comes from pillow-heif (runtime dependency)")
    pillow_heif.register_heif_opener()
    heic = tmp_path / "phone.heic"
    with Image.open(scenes / "fr_two_people.jpg") as img:
        img.save(heic, format="HEIF", quality=85)
    assert heic.read_bytes()[4:12] == b"ftypheic"
    proc = run("analyze", str(heic))
    assert proc.returncode == 0, proc.stderr
    (record,) = lines(proc.stdout)
    assert record["image"] == {"width": 1126, "height": 661} and len(record["faces"]) == 2


def test_serve_on_a_busy_port_says_what_to_do():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run("serve", "--port", str(port))
    assert proc.returncode == 2
    assert f"127.0.0.1:{port} is already in use" in proc.stderr and f"make run PORT={port + 1}" in proc.stderr
    no_traceback(proc)


def test_models_fetch_prints_one_line_per_model(model_dir, shared_dir, tmp_path):
    proc = run("models", "fetch", "--from", str(shared_dir / "models"), "--dest", str(model_dir))
    assert proc.returncode == 0, proc.stderr
    lines_out = proc.stdout.splitlines()
    assert lines_out and all(re.match(r"model \w+: (present|copied|downloaded|bundled), sha256 verified", line)
                             for line in lines_out), lines_out
    target = tmp_path / "fetched.json"
    assert run("models", "fetch", "--from", str(shared_dir / "models"), "--dest", str(model_dir),
               "--json", str(target)).returncode == 0
    assert {m["name"] for m in json.loads(target.read_text())["fetched"]} >= {"yunet", "mobilefacenet"}
