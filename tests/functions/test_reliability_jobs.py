"""Jobs that finish or fail, always (issue 12, rows 6-11, 17, 19, 20): real boto3 against moto's S3 server,
the real S3 trigger handler, and a real `emotion serve` for the local mode.

Each test would fail on the code before the issue: there was no sweep, the local queue lived only in
memory, keys carried the client's file name (routed by case-sensitive suffix), the policy allowed 1..500 MB
whatever the declared size, forged uploads were stored before they were refused, a missing object failed
the job for good, and one malformed record failed the whole batch.
"""

# ruff: noqa: F811 - the moto/app fixtures of test_jobs_s3 are imported and used as parameters
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import requests
from fastapi.testclient import TestClient

from tests.functions.test_jobs_s3 import (  # noqa: F401 - fixtures
    INPUTS,
    RESULTS,
    LambdaContext,
    client,
    create_and_upload,
    moto_endpoint,
    run_handler,
    s3_event,
    s3env,
)

NAMES = [("видео.mp4", "video/mp4"), ("clip.Mp4", "video/mp4"), ("photo.Jpg", "image/jpeg"),
         ("holiday.mpg", "video/mpeg"), ("clip.mpeg", "video/mpeg"), ("anim.gif", "image/gif"),
         ("photo.jfif", "image/jpeg"), ("clip.qt", "video/quicktime"), ("clip", "video/mp4"),
         ("PHOTO.PNG", "image/png"), ("scan.TIFF", "image/tiff"), ("x.webm", "video/webm")]


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    from emotion.settings import get_settings

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


# ------------------------------------------------------------------------------------------- routing (8-11)


@pytest.mark.parametrize("gpu_video", ["false", "true"])
def test_keys_are_named_by_route_whatever_the_file_name(client: TestClient, monkeypatch, gpu_video: str):
    from emotion.jobs.service import parse_upload_key

    _settings(monkeypatch, EMOTION_GPU_VIDEO=gpu_video)
    for name, content_type in NAMES:
        job = client.post("/v1/jobs", json={"filename": name, "content_type": content_type, "size": 1000}).json()
        key = job["upload"]["fields"]["key"]
        video_route = "gpu-video" if gpu_video == "true" else "video"
        expected = "image" if content_type.startswith("image/") else video_route
        assert key == f"uploads/{job['job_id']}/input.{expected}", (name, key)
        assert parse_upload_key(key) == job["job_id"]
        assert client.get(f"/v1/jobs/{job['job_id']}").json()["filename"]  # the name is kept for display


def test_a_large_video_without_the_gpu_path_is_refused_at_creation(client: TestClient, monkeypatch):
    _settings(monkeypatch, EMOTION_GPU_VIDEO="false", EMOTION_LAMBDA_VIDEO_MAX_BYTES="1000000")
    refused = client.post("/v1/jobs", json={"filename": "long.mp4", "content_type": "video/mp4", "size": 2_000_000})
    assert refused.status_code == 413 and "gpu_video" in refused.json()["error"]["message"]
    _settings(monkeypatch, EMOTION_GPU_VIDEO="true")
    routed = client.post("/v1/jobs", json={"filename": "long.mp4", "content_type": "video/mp4", "size": 2_000_000})
    assert routed.status_code == 201 and routed.json()["upload"]["fields"]["key"].endswith("/input.gpu-video")
    # A "video" declared as an image is held to the image size limit, so it cannot reach the Lambda's
    # video budget through the image route.
    _settings(monkeypatch, EMOTION_JOB_IMAGE_MAX_BYTES="1500000")
    as_image = client.post("/v1/jobs", json={"filename": "clip.jpg", "content_type": "image/jpeg", "size": 2_000_000})
    assert as_image.status_code == 413


def test_the_bytes_choose_the_pipeline_not_the_declared_type(client: TestClient, shared_dir: Path):
    data = (shared_dir / "data" / "videos" / "fa_test_video.mp4").read_bytes()
    job_id, key = create_and_upload(client, "holiday.jpg", "image/jpeg", data)  # a video declared as JPEG
    assert key.endswith("/input.image")
    assert run_handler(key, len(data))["records"][0]["outcome"] == "succeeded"
    status = client.get(f"/v1/jobs/{job_id}").json()
    assert status["kind"] == "video" and status["result"]["kind"] == "video"


def test_policy_size_is_the_declared_size(client: TestClient):
    from emotion.storage.base import check_post_policy

    job = client.post("/v1/jobs", json={"filename": "a.jpg", "content_type": "image/jpeg", "size": 1000}).json()
    fields = job["upload"]["fields"]
    conditions = json.loads(base64.b64decode(fields["policy"]))["conditions"]
    assert ["content-length-range", 1000, 1000] in conditions
    assert check_post_policy(fields["policy"], fields, 1000, INPUTS) is None
    assert check_post_policy(fields["policy"], fields, 52_000, INPUTS) is not None
    assert check_post_policy(fields["policy"], fields, 999, INPUTS) is not None


# ------------------------------------------------------------------------------------------- sweep (6, 20)


def _age(record: dict, seconds: float) -> None:
    from emotion.jobs import service

    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - seconds))
    record["updated_at"] = stamp
    service.get_storage().put_bytes("results", f"jobs/{record['job_id']}.json", json.dumps(record).encode(),
                                    "application/json")


def test_sweep_redelivers_stale_jobs_then_fails_them(client: TestClient, s3env, scenes: Path):
    from emotion.jobs import service
    from emotion.jobs.sweep import handler as sweep_handler
    from emotion.settings import get_settings

    data = (scenes / "fr_two_people.jpg").read_bytes()
    crashed_id, crashed_key = create_and_upload(client, "a.jpg", "image/jpeg", data)
    spent_id, _ = create_and_upload(client, "b.jpg", "image/jpeg", data)
    lost_id, lost_key = create_and_upload(client, "c.jpg", "image/jpeg", data)  # its event never came
    never = client.post("/v1/jobs", json={"filename": "d.jpg", "content_type": "image/jpeg", "size": 10}).json()
    stale = get_settings().job_stale_s + 60
    crashed = service.read_record(crashed_id)
    crashed.update(status="processing", attempts=1)  # a trigger killed mid-job (timeout, out of memory)
    _age(crashed, stale)
    spent = service.read_record(spent_id)
    spent.update(status="processing", attempts=get_settings().job_max_attempts)
    _age(spent, stale)
    _age(service.read_record(lost_id), stale)
    _age(service.read_record(never["job_id"]), stale + get_settings().upload_expires_s)

    counts = sweep_handler({"source": "aws.events"}, LambdaContext())
    assert counts["redelivered"] == 2 and counts["failed"] == 2
    # Redelivery is an in-place copy: a new ObjectCreated event for the same key, routed as the first.
    head = s3env.head_object(Bucket=INPUTS, Key=crashed_key)
    assert "redelivered" in head["Metadata"] and head["ContentType"] == "image/jpeg"
    assert "redelivered" in s3env.head_object(Bucket=INPUTS, Key=lost_key)["Metadata"]
    assert client.get(f"/v1/jobs/{spent_id}").json()["error"]["code"] == "processing_abandoned"
    assert client.get(f"/v1/jobs/{never['job_id']}").json()["error"]["code"] == "upload_expired"
    # The redelivered events' trigger runs re-claim and finish them.
    for key in (crashed_key, lost_key):
        assert run_handler(key, len(data))["records"][0]["outcome"] == "succeeded"
    assert client.get(f"/v1/jobs/{crashed_id}").json()["status"] == "succeeded"
    again = sweep_handler({}, LambdaContext())  # the bucket is shared with this module's other tests
    assert again["redelivered"] == 0 and again["failed"] == 0


def test_an_event_before_its_object_leaves_the_job_pending(client: TestClient, scenes: Path):
    data = (scenes / "fr_two_people.jpg").read_bytes()
    job = client.post("/v1/jobs", json={"filename": "a.jpg", "content_type": "image/jpeg", "size": len(data)}).json()
    key = job["upload"]["fields"]["key"]
    assert run_handler(key, len(data))["records"][0]["outcome"] == "upload_missing"
    assert client.get(f"/v1/jobs/{job['job_id']}").json()["status"] == "pending"
    posted = requests.post(job["upload"]["url"], data=job["upload"]["fields"],
                           files={"file": ("a.jpg", data, "image/jpeg")}, timeout=30)
    assert posted.status_code == 204
    assert run_handler(key, len(data))["records"][0]["outcome"] == "succeeded"


# ------------------------------------------------------------------------------------------- trigger (17)


def test_malformed_records_are_skipped_and_the_rest_of_the_batch_goes_on(client: TestClient, scenes: Path):
    from emotion.jobs.s3_trigger import handler

    data = (scenes / "fr_two_people.jpg").read_bytes()
    job_id, key = create_and_upload(client, "a.jpg", "image/jpeg", data)
    good = s3_event(key, len(data))["Records"][0]
    bad = []
    for mutate in (lambda r: r["s3"]["object"].update(key=None), lambda r: r["s3"]["object"].update(key=5),
                   lambda r: r["s3"]["object"].update(size="big"), lambda r: r.update(s3="nope"),
                   lambda r: r["s3"].update(bucket=None)):
        record = json.loads(json.dumps(good))
        mutate(record)
        bad.append(record)
    out = handler({"Records": [*bad[:3], "not a record", good, *bad[3:]]}, LambdaContext())
    assert out["records"] == [{"key": key, "outcome": "succeeded"}]
    assert handler({"Records": {"not": "a list"}}, LambdaContext()) == {"records": []}
    assert handler({"Records": None}, LambdaContext()) == {"records": []}


# ------------------------------------------------------------------------------------------- local mode (7, 19)


def _serve(data_dir: Path, model_dir: Path, tmp: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, EMOTION_STORAGE="local", EMOTION_DATA_DIR=str(data_dir), EMOTION_MODEL_DIR=str(model_dir),
               TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
    env.pop("EMOTION_API_KEY", None)
    return subprocess.Popen([sys.executable, "-c", "import sys; from emotion.cli import main; sys.exit(main())",
                             "serve", "--port", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _url(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if "serving http://" in line:
            return line.split("serving ")[1].split(" ")[0]
    raise AssertionError("server did not start")


def _wait(base: str, job_ids: list[str], timeout: float = 120) -> list[dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        states = [httpx.get(f"{base}v1/jobs/{job_id}").json() for job_id in job_ids]
        if all(s["status"] in ("succeeded", "failed") for s in states):
            return states
        time.sleep(0.3)
    raise AssertionError(f"jobs did not finish: {[s['status'] for s in states]}")


def test_local_jobs_survive_a_killed_server(tmp_path: Path, model_dir: Path, shared_dir: Path):
    data_dir, tmp = tmp_path / "data", tmp_path / "tmp"
    tmp.mkdir()
    video = (shared_dir / "data" / "videos" / "fa_test_video.mp4").read_bytes()
    proc = _serve(data_dir, model_dir, tmp)
    try:
        base = _url(proc)
        job_ids = []
        for n in range(3):
            job = httpx.post(base + "v1/jobs", json={"filename": f"v{n}.mp4", "content_type": "video/mp4",
                                                     "size": len(video)}).json()
            posted = httpx.post(job["upload"]["url"], data=job["upload"]["fields"],
                                files={"file": ("v.mp4", video, "video/mp4")})
            assert posted.status_code == 204
            job_ids.append(job["job_id"])
        # Killed without warning while the first job runs: nothing in memory survives.
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    (data_dir / "tmp" / "emotion-job-leftover").mkdir(parents=True, exist_ok=True)  # as a killed job leaves it
    states = [json.loads((data_dir / "results" / f"jobs/{j}.json").read_text())["status"] for j in job_ids]
    assert set(states) - {"succeeded"}, "the kill came too late to test anything"
    proc = _serve(data_dir, model_dir, tmp)
    try:
        base = _url(proc)
        finished = _wait(base, job_ids)
        assert [s["status"] for s in finished] == ["succeeded"] * 3, finished
        assert not list((data_dir / "tmp").iterdir())  # the killed process's temp folders are gone
        assert not list(tmp.glob("emotion-job-*"))  # and no job folder was left in TMPDIR
    finally:
        proc.terminate()
        proc.wait(20)


def test_forged_and_replayed_uploads_are_refused_before_anything_is_stored(tmp_path: Path, model_dir: Path,
                                                                         scenes: Path):
    data_dir, tmp = tmp_path / "data", tmp_path / "tmp"
    tmp.mkdir()
    photo = (scenes / "fr_two_people.jpg").read_bytes()
    proc = _serve(data_dir, model_dir, tmp)
    try:
        base = _url(proc)
        job = httpx.post(base + "v1/jobs", json={"filename": "a.jpg", "content_type": "image/jpeg",
                                                 "size": len(photo)}).json()
        fields = job["upload"]["fields"]
        forged = dict(fields, **{"x-amz-signature": "0" * 64})
        sent = [0]

        def body():  # 50 MB of file after the forged fields; the server must stop reading long before the end
            boundary = "b0undary"
            head = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                           for k, v in forged.items())
            yield (head + f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
                   "Content-Type: image/jpeg\r\n\r\n").encode()
            for _ in range(50):
                sent[0] += 1
                time.sleep(0.005)
                yield b"\0" * 1_000_000
            yield f"\r\n--{boundary}--\r\n".encode()

        peak = [0]
        done = threading.Event()

        def watch() -> None:  # the most bytes on disk (data dir + TMPDIR) while the forged upload streams in
            while not done.is_set():
                peak[0] = max(peak[0], sum(p.stat().st_size for d in (data_dir, tmp) for p in d.rglob("*")
                                           if p.is_file()))
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            refused = httpx.post(job["upload"]["url"], content=body(),
                                 headers={"content-type": "multipart/form-data; boundary=b0undary"}, timeout=60)
        finally:
            done.set()
            watcher.join()
        assert refused.status_code == 403
        assert peak[0] < 1_000_000, peak  # the old stand-in spooled the whole 50 MB before refusing
        stored = [p for p in (data_dir / "inputs").rglob("*") if p.is_file()]
        spooled = [p for p in tmp.rglob("*") if p.is_file() and p.stat().st_size > 1_000_000]
        assert stored == [] and spooled == []  # nothing written, neither in data nor spooled in TMPDIR
        # Too large for the declared size: cut off, not stored.
        too_big = httpx.post(job["upload"]["url"], data=fields, files={"file": ("a.jpg", photo + b"\0" * 52_000,
                                                                                   "image/jpeg")})
        assert too_big.status_code == 403 and not [p for p in (data_dir / "inputs").rglob("*") if p.is_file()]
        ok = httpx.post(job["upload"]["url"], data=fields, files={"file": ("a.jpg", photo, "image/jpeg")})
        assert ok.status_code == 204
        assert _wait(base, [job["job_id"]])[0]["status"] == "succeeded"
        # Replaying the valid form: refused, and the stored input of the finished job is unchanged.
        other = b"\xff\xd8\xff" + bytes(len(photo) - 3)
        replay = httpx.post(job["upload"]["url"], data=fields, files={"file": ("a.jpg", other, "image/jpeg")})
        assert replay.status_code == 403
        stored = next(p for p in (data_dir / "inputs").rglob("input.image"))
        assert stored.read_bytes() == photo
    finally:
        proc.terminate()
        proc.wait(20)
