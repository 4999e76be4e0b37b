"""`make run` as a person sees it: a few quiet lines, then the URL line; `PORT=` picks the port."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_prints_at_most_ten_lines_before_the_url(model_dir, shared_dir):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("MAKEFLAGS", None)
    proc = subprocess.Popen(["make", "--no-print-directory", "run", "PORT=0", f"SHARED={shared_dir}"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    before: list[str] = []
    url = None
    try:
        deadline = time.monotonic() + 600
        assert proc.stdout is not None
        for line in proc.stdout:
            match = re.search(r"emotion: serving (http://127\.0\.0\.1:\d+/)", line)
            if match:
                url = match.group(1)
                break
            before.append(line.rstrip("\n"))
            assert time.monotonic() < deadline and len(before) < 200, before
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # make and the server it started (their own process group)
        proc.wait(30)
    assert url, "\n".join(before)
    assert len(before) <= 10, "\n".join(before)
    assert not [line for line in before if re.search(r"Traceback|Warning|WARNING|deprecat", line)], before
    models = [line for line in before if line.startswith("model ")]
    assert models and all(line.endswith(".onnx)") and "sha256 verified" in line for line in models)
    assert before[-1] == ""  # the URL line is set apart
