"""Jobs against S3: real boto3 talking to moto's S3 server on 127.0.0.1, the real S3 event shape, the app.

create job → presigned POST upload (requests) → ObjectCreated event → s3_trigger.handler →
GET /v1/jobs/{id} through the FastAPI app with storage=s3.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

import boto3
import pytest
import requests
from fastapi.testclient import TestClient

EVENTS = Path(__file__).resolve().parents[1] / "events"
INPUTS, RESULTS = "emotion-inputs-test", "emotion-results-test"
MAX_UPLOAD = 3_000_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LambdaContext:
    function_name: str = "emotion-s3-trigger"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:emotion-s3-trigger"
    aws_request_id: str = "6f1a0f5e-1d7b-4b59-9a31-0b6c1d2b3c4d"


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def s3env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, model_dir: Path):
    from emotion.settings import get_settings
    from emotion.storage import get_storage

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto_endpoint,
        "EMOTION_STORAGE": "s3", "EMOTION_INPUTS_BUCKET": INPUTS, "EMOTION_RESULTS_BUCKET": RESULTS,
        "EMOTION_MAX_UPLOAD_BYTES": str(MAX_UPLOAD), "EMOTION_VIDEO_FPS": "5",
        "POWERTOOLS_SERVICE_NAME": "emotion-s3-trigger",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("EMOTION_API_KEY", raising=False)
    get_settings.cache_clear()
    get_storage.cache_clear()
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    for bucket in (INPUTS, RESULTS):
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=bucket)
    yield s3
    get_settings.cache_clear()
    get_storage.cache_clear()


@pytest.fixture()
def client(s3env):
    from emotion.api.app import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


def s3_event(key: str, size: int, bucket: str = INPUTS) -> dict:
    event = json.loads((EVENTS / "s3_object_created.json").read_text())
    record = event["Records"][0]
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    record["s3"]["object"]["key"] = quote_plus(key, safe="/")  # S3 URL-encodes keys in events
    record["s3"]["object"]["size"] = size
    return event


def create_and_upload(client: TestClient, name: str, content_type: str, data: bytes) -> tuple[str, str]:
    resp = client.post("/v1/jobs", json={"filename": name, "content_type": content_type, "size": len(data)})
    assert resp.status_code == 201, resp.text
    job = resp.json()
    upload = job["upload"]
    assert upload["fields"]["key"].startswith(f"uploads/{job['job_id']}/")
    posted = requests.post(upload["url"], data=upload["fields"], files={"file": (name, data, content_type)},
                           timeout=30)
    assert posted.status_code == 204, posted.text
    return job["job_id"], upload["fields"]["key"]


def run_handler(key: str, size: int) -> dict:
    from emotion.jobs.s3_trigger import handler

    return handler(s3_event(key, size), LambdaContext())


def test_policy_limits_type_size_and_expiry(client: TestClient) -> None:
    from emotion.storage.base import check_post_policy

    resp = client.post("/v1/jobs", json={"filename": "../../etc/clip one.mp4", "content_type": "video/mp4",
                                         "size": 1000})
    assert resp.status_code == 201
    job = resp.json()
    fields = job["upload"]["fields"]
    assert fields["key"] == f"uploads/{job['job_id']}/input.video"  # named by route, not by the client's name
    assert fields["Content-Type"] == "video/mp4"
    policy = json.loads(base64.b64decode(fields["policy"]))
    conditions = policy["conditions"]
    assert ["content-length-range", 1000, 1000] in conditions  # exactly the declared size
    assert {"Content-Type": "video/mp4"} in conditions
    assert {"key": fields["key"]} in conditions and {"bucket": INPUTS} in conditions
    expires = time.mktime(time.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert 0 < expires - time.time() <= 15 * 60 + 5
    assert job["expires_in"] <= 900
    # What S3 evaluates: the same fields within size pass; a bigger file or another type is refused.
    assert check_post_policy(fields["policy"], fields, 1000, INPUTS) is None
    assert "outside" in check_post_policy(fields["policy"], fields, MAX_UPLOAD + 1, INPUTS)
    assert "Content-Type" in check_post_policy(fields["policy"], {**fields, "Content-Type": "text/html"}, 10, INPUTS)
    # moto's S3 server does not evaluate POST policies (moto 5.x: no content-length-range or condition
    # checks), so an over-size POST reaches the bucket there; real S3 answers 400 EntityTooLarge.
    too_big = requests.post(job["upload"]["url"], data=fields,
                            files={"file": ("clip.mp4", b"\0" * (MAX_UPLOAD + 1), "video/mp4")}, timeout=30)
    moto_enforces = too_big.status_code >= 400
    if moto_enforces:  # pragma: no cover - a future moto that enforces the policy
        assert too_big.status_code in (400, 403)


def test_create_job_validation(client: TestClient) -> None:
    bad_type = client.post("/v1/jobs", json={"filename": "a.pdf", "content_type": "application/pdf", "size": 10})
    assert bad_type.status_code == 415 and bad_type.json()["error"]["code"] == "unsupported_media_type"
    too_big = client.post("/v1/jobs", json={"filename": "a.mp4", "content_type": "video/mp4", "size": MAX_UPLOAD + 1})
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "upload_too_large"
    missing = client.post("/v1/jobs", json={"filename": "a.mp4"})
    assert missing.status_code == 422 and "error" in missing.json()
    assert client.get("/v1/jobs/" + "0" * 32).status_code == 404
    assert client.get("/v1/jobs/" + "0" * 32).json()["error"]["code"] == "job_not_found"
    malformed = client.get("/v1/jobs/not-a-job-id")
    assert malformed.status_code == 422 and malformed.json()["error"]["code"] == "bad_parameter"


def test_image_job_end_to_end_and_duplicate_delivery(client: TestClient, s3env, scenes: Path) -> None:
    data = (scenes / "fr_two_people.jpg").read_bytes()
    job_id, key = create_and_upload(client, "two people.jpg", "image/jpeg", data)
    pending = client.get(f"/v1/jobs/{job_id}").json()
    assert pending["status"] == "pending" and pending["progress"] == 0

    out = run_handler(key, len(data))
    assert out["records"] == [{"key": key, "outcome": "succeeded"}]
    status = client.get(f"/v1/jobs/{job_id}").json()
    assert status["status"] == "succeeded" and status["progress"] == 1.0 and status["error"] is None
    assert status["result"]["kind"] == "image" and len(status["result"]["faces"]) >= 2
    annotated = requests.get(status["annotated_url"], timeout=30)
    assert annotated.status_code == 200 and annotated.content[:3] == b"\xff\xd8\xff"

    # The same event delivered again (S3 delivers at least once): no error, still one result.
    updated = status["updated_at"]
    again = run_handler(key, len(data))
    assert again["records"] == [{"key": key, "outcome": "duplicate"}]
    listing = s3env.list_objects_v2(Bucket=RESULTS, Prefix=f"results/{job_id}/")
    assert sorted(o["Key"] for o in listing["Contents"]) == [
        f"results/{job_id}/annotated.jpg", f"results/{job_id}/result.json"]
    assert client.get(f"/v1/jobs/{job_id}").json()["updated_at"] == updated


def test_video_job_through_s3(client: TestClient, s3env, shared_dir: Path, tmp_path: Path) -> None:
    import cv2

    data = (shared_dir / "data" / "videos" / "fa_test_video.mp4").read_bytes()
    job_id, key = create_and_upload(client, "face-api clip.mp4", "video/mp4", data)
    assert run_handler(key, len(data))["records"][0]["outcome"] == "succeeded"
    status = client.get(f"/v1/jobs/{job_id}").json()
    assert status["status"] == "succeeded"
    result = status["result"]
    assert result["kind"] == "video" and result["video"]["frames_read"] == 5 and result["tracks"]
    video = requests.get(status["annotated_url"], timeout=30)
    assert video.status_code == 200
    path = tmp_path / f"{job_id}.mp4"
    path.write_bytes(video.content)
    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    cap.release()


@pytest.mark.parametrize(("name", "content_type", "data", "code"), [
    ("broken.jpg", "image/jpeg", b"\xff\xd8\xff\xe0" + b"\x13\x37" * 400, "undecodable_image"),
    ("noise.mp4", "video/mp4", bytes(range(256)) * 16, "undecodable_video"),
])
def test_poison_upload_fails_with_reason_once(client: TestClient, name: str, content_type: str, data: bytes,
                                              code: str) -> None:
    job_id, key = create_and_upload(client, name, content_type, data)
    assert run_handler(key, len(data))["records"][0]["outcome"] == "failed"
    status = client.get(f"/v1/jobs/{job_id}").json()
    assert status["status"] == "failed" and status["error"]["code"] == code and status["error"]["message"]
    assert status["result"] is None
    # Redelivery does not retry a poison input.
    assert run_handler(key, len(data))["records"][0]["outcome"] == "duplicate"


def test_handler_ignores_other_keys_and_decodes_keys(s3env) -> None:
    from emotion.jobs.s3_trigger import handler, keys_from_event

    canonical = json.loads((EVENTS / "s3_object_created.json").read_text())
    assert keys_from_event(canonical)[0][1] == "uploads/0123456789abcdef0123456789abcdef/my photo.jpg"
    event = s3_event("results/abc/result.json", 10)
    assert handler(event, LambdaContext())["records"] == [{"key": "results/abc/result.json", "outcome": "ignored"}]
    deleted = copy.deepcopy(event)
    deleted["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    assert handler(deleted, LambdaContext())["records"] == []
    # An upload key with no job behind it is not an error either.
    orphan = s3_event("uploads/" + "f" * 32 + "/input.image", 10)
    assert handler(orphan, LambdaContext())["records"][0]["outcome"] == "unknown_job"


def test_stuck_job_is_retried_then_abandoned(client: TestClient, s3env, scenes: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from emotion.jobs import service
    from emotion.settings import get_settings

    data = (scenes / "fr_two_people.jpg").read_bytes()
    job_id, key = create_and_upload(client, "p.jpg", "image/jpeg", data)
    # Simulate a worker that crashed mid-way twice: the record says processing, long ago.
    record = service.read_record(job_id)
    record.update(status="processing", attempts=get_settings().job_max_attempts)
    service.write_record(record)
    monkeypatch.setattr(service, "_age_s", lambda stamp: 10_000.0)
    assert service.process_upload(key) == "failed"
    status = client.get(f"/v1/jobs/{job_id}").json()
    assert status["status"] == "failed" and status["error"]["code"] == "processing_abandoned"


def test_video_job_entry_point_with_eventbridge_event(s3env, shared_dir: Path, client: TestClient,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from emotion.jobs import video_job

    monkeypatch.setenv("EMOTION_PROVIDERS", "CUDAExecutionProvider,CPUExecutionProvider")  # GPU image default

    data = (shared_dir / "data" / "videos" / "fa_test_video.mp4").read_bytes()
    job_id, key = create_and_upload(client, "batch.mp4", "video/mp4", data)
    event = {"version": "0", "detail-type": "Object Created", "source": "aws.s3",
             "detail": {"bucket": {"name": INPUTS}, "object": {"key": key, "size": len(data)}}}
    assert video_job.main(["--event", json.dumps(event)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["outcome"] == "succeeded" and out["providers"][-1] == "CPUExecutionProvider"
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
