"""What `emotion analyze` and `emotion video` print and write, run as a person runs them: --format table, json and
jsonl (JSON Lines stays the default in a pipe), output folders created (or one line saying why not), a progress
bar on stderr only on a terminal or when asked, and `| head` without a BrokenPipe traceback."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.terminal import run_in_terminal
from tests.unit.test_cli_usage import EMOTION, lines, no_traceback, run


def test_format_table_one_row_per_face_with_errors_in_their_row(model_dir, scenes, tmp_path):
    proc = run("analyze", str(scenes / "fr_two_people.jpg"), str(scenes / "fp_multiface.jpg"),
               str(tmp_path / "missing.jpg"), "--format", "table")
    assert proc.returncode == 1
    rows = proc.stdout.splitlines()
    assert rows[0].split() == ["FILE", "FACE", "EMOTION", "BOX", "(x,y", "wxh)", "NEXT"]
    faces = [r for r in rows[1:] if "error" not in r]
    assert len(faces) == 2 + 6  # one row per face, the file named on its first row only
    assert faces[0].split()[0].endswith("fr_two_people.jpg") and faces[1].startswith(" ")
    assert len(faces[0].split()[0]) <= 40  # a long name keeps its end: "…ared/data/scenes/fr_two_people.jpg"
    face_col = rows[0].index("FACE")
    assert [r[face_col:].split()[0] for r in faces[:2]] == ["1", "2"]
    # The emotion and box of each row are those of the JSON, in the JSON's order.
    record = lines(run("analyze", str(scenes / "fr_two_people.jpg"), "--format", "jsonl").stdout)[0]
    for row, face in zip(faces[:2], record["faces"], strict=True):
        b = face["box"]
        assert f"{face['dominant_emotion']} {face['emotions'][face['dominant_emotion']]:.0%}" in row
        assert f"{b['x']},{b['y']} {b['width']}x{b['height']}" in row
    assert rows[-1][face_col:].split()[:2] == ["-", "error:"] and "missing.jpg" in rows[-1]
    # Columns line up: every row's EMOTION column starts where the header's does.
    start = rows[0].index("EMOTION")
    assert all(r[start - 2 : start] == "  " and r[start] != " " for r in rows[1:])


def test_table_marks_unreliable_faces_as_the_json_does(model_dir, scenes, tmp_path):
    from PIL import Image, ImageEnhance

    dark = tmp_path / "dark.jpg"
    ImageEnhance.Brightness(Image.open(scenes / "fr_two_people.jpg")).enhance(0.12).save(dark, quality=90)
    paths = [str(scenes / "fr_two_people.jpg"), str(dark)]
    records = lines(run("analyze", *paths, "--format", "jsonl").stdout)
    flags = [face["quality"]["reliable"] for r in records for face in r["faces"]]
    assert True in flags and False in flags  # the darkened copy's faces are unreliable
    rows = run("analyze", *paths, "--format", "table").stdout.splitlines()[1:]
    assert ["unreliable" in row for row in rows] == [not flag for flag in flags]


def test_format_json_is_one_array_and_jsonl_one_line_per_input(model_dir, scenes):
    paths = [str(scenes / "fr_two_people.jpg"), str(scenes / "fp_multiface.jpg")]
    array = json.loads(run("analyze", *paths, "--format", "json").stdout)
    assert [len(r["faces"]) for r in array] == [2, 6]
    jsonl = run("analyze", *paths, "--format", "jsonl").stdout
    assert [len(r["faces"]) for r in lines(jsonl)] == [2, 6]
    # In a pipe the default stays JSON Lines (the same records but for their timings).
    default = lines(run("analyze", *paths).stdout)
    assert [r["faces"] for r in default] == [r["faces"] for r in lines(jsonl)] == [r["faces"] for r in array]


def test_format_csv_is_one_row_per_face_with_the_collection_columns(model_dir, scenes, tmp_path):
    import csv

    from emotion.tables import CSV_COLUMNS

    proc = run("analyze", str(scenes / "fr_two_people.jpg"), str(tmp_path / "missing.jpg"), "--format", "csv")
    assert proc.returncode == 1
    rows = list(csv.DictReader(proc.stdout.splitlines()))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["face"], bool(r["error"])) for r in rows] == [("1", False), ("2", False), ("", True)]
    assert rows[0]["dominant_emotion"] and float(rows[0][rows[0]["dominant_emotion"]]) > 0
    for row in rows[:2]:  # pose and quality of every face
        assert all(abs(float(row[f"pose_{axis}"])) < 90 for axis in ("yaw", "pitch", "roll"))
        assert float(row["quality_brightness"]) > 0 and float(row["quality_sharpness"]) > 0
        assert int(row["quality_size"]) == min(int(row["width"]), int(row["height"]))
        assert row["quality_reliable"] == "True"
    assert rows[2]["pose_yaw"] == rows[2]["quality_reliable"] == ""


def test_on_a_terminal_the_default_is_the_table(model_dir, scenes):
    status, text = run_in_terminal([EMOTION, "analyze", str(scenes / "fr_two_people.jpg")])
    assert status == 0
    assert text.startswith("FILE") and "BOX (x,y wxh)" in text and "{" not in text


def test_annotate_and_json_create_their_folders(model_dir, scenes, tmp_path):
    out = tmp_path / "new" / "deeper" / "two.png"
    report = tmp_path / "reports" / "today" / "all.json"
    proc = run("analyze", str(scenes / "fr_two_people.jpg"), "--annotate", str(out), "--json", str(report))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(json.loads(report.read_text())[0]["faces"]) == 2


@pytest.mark.parametrize("where", ["under_a_file", "is_a_folder"])
def test_an_output_that_cannot_be_written_is_one_line_before_any_work(model_dir, scenes, tmp_path, where):
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "adir.jpg").mkdir()
    target = tmp_path / "afile" / "out.jpg" if where == "under_a_file" else tmp_path / "adir.jpg"
    proc = run("analyze", str(scenes / "fr_two_people.jpg"), "--annotate", str(target))
    assert proc.returncode == 2 and proc.stdout == ""
    no_traceback(proc)
    (message,) = proc.stderr.splitlines()
    assert message.startswith(f"emotion: --annotate {target}: ")
    assert ("cannot create the folder" if where == "under_a_file" else "is a folder") in message


def test_progress_bar_on_stderr_only_when_asked_or_on_a_terminal(model_dir, scenes):
    paths = [str(scenes / "fr_two_people.jpg"), str(scenes / "fp_multiface.jpg")]
    quiet = run("analyze", *paths)
    assert quiet.stderr == ""  # stderr is not a terminal here, and no bar was asked for
    shown = run("analyze", *paths, "--progress")
    assert "analyze" in shown.stderr and "2/2" in shown.stderr and "image" in shown.stderr
    assert [r["faces"] for r in lines(shown.stdout)] == [r["faces"] for r in lines(quiet.stdout)]  # stdout: no bar


def test_video_progress_bar_and_annotate_folder(model_dir, shared_dir, tmp_path):
    videos = shared_dir / "data" / "videos"
    out = tmp_path / "made" / "here" / "clip.mp4"
    proc = run("video", str(videos / "fa_test_video.mp4"), "--fps", "2", "--progress", "--annotate", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "video" in proc.stderr and "frame" in proc.stderr
    assert out.stat().st_size > 0 and "persons" in json.loads(proc.stdout)
    quiet = run("video", str(videos / "fa_test_video.mp4"), "--fps", "2")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_closing_the_pipe_early_stops_quietly(model_dir, scenes, tmp_path):
    """`emotion analyze ... | head -1`: the reader goes away after one line; no traceback, exit status 141."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(6):
        (folder / f"{i}.jpg").write_bytes((scenes / "fr_two_people.jpg").read_bytes())
    proc = subprocess.Popen([EMOTION, "analyze", str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141
    assert json.loads(first)["file"].endswith("0.jpg")
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
