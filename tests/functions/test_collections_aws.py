"""Collections on AWS, against moto's S3 and SQS (ThreadedMotoServer on 127.0.0.1, real boto3 clients):

create the job through the app (storage=s3) → presigned POST of a ZIP of 500 real photos → the S3 trigger handler
(a real ObjectCreated event) plans 10 chunks and sends them to SQS → the chunk worker handler is invoked with
the SQS events built from the messages moto really delivers, as the event source mapping would (deleting a
message when the handler reports no failure). One chunk's message is delivered twice (its delete is lost, so
SQS delivers it again after the visibility timeout); one chunk's worker is killed (SIGKILL, in a child process)
in the middle of its chunk and SQS delivers that chunk again. The merged files are then checked row by row
against the same archive run through the local flow.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import multiprocessing
import os
import signal
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests
from fastapi.testclient import TestClient

from tests.functions.test_jobs_s3 import LambdaContext as S3TriggerContext
from tests.functions.test_jobs_s3 import moto_endpoint  # noqa: F401 - the module's moto server fixture
from tests.functions.test_jobs_s3 import s3_event as s3_event_for

EVENTS = Path(__file__).resolve().parents[1] / "events"
INPUTS, RESULTS, QUEUE = "emotion-inputs-coll", "emotion-results-coll", "emotion-collection-chunks"
IMAGES, CHUNK = 500, 50
VISIBILITY_S = 3


@dataclass
class LambdaContext(S3TriggerContext):
    function_name: str = "emotion-collection-worker"
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:emotion-collection-worker"


@pytest.fixture()
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, model_dir: Path, tmp_path: Path):  # noqa: F811
    from emotion.settings import get_settings
    from emotion.storage import get_storage

    common = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
              "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto_endpoint}
    for name, value in common.items():
        monkeypatch.setenv(name, value)
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    dlq_url = sqs.create_queue(QueueName=f"{QUEUE}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(QueueName=QUEUE, Attributes={
        "VisibilityTimeout": str(VISIBILITY_S),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})})["QueueUrl"]
    for name, value in {
        "EMOTION_STORAGE": "s3", "EMOTION_INPUTS_BUCKET": INPUTS, "EMOTION_RESULTS_BUCKET": RESULTS,
        "EMOTION_MAX_UPLOAD_BYTES": "20000000", "EMOTION_COLLECTION_CHUNK_IMAGES": str(CHUNK),
        "EMOTION_COLLECTION_QUEUE_URL": queue_url, "EMOTION_DATA_DIR": str(tmp_path / "local"),
        "POWERTOOLS_SERVICE_NAME": "emotion-collection-worker",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("EMOTION_API_KEY", raising=False)
    get_settings.cache_clear()
    get_storage.cache_clear()
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    for bucket in (INPUTS, RESULTS):
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=bucket)
    yield {"s3": s3, "sqs": sqs, "queue_url": queue_url, "dlq_url": dlq_url}
    sqs.delete_queue(QueueUrl=queue_url)
    sqs.delete_queue(QueueUrl=dlq_url)
    get_settings.cache_clear()
    get_storage.cache_clear()


def archive(shared_dir: Path) -> bytes:
    scenes = sorted((shared_dir / "data" / "scenes").glob("*.jpg"))
    crops = sorted((shared_dir / "data" / "ferplus_train").glob("*.png"))[: IMAGES - len(scenes)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for index, path in enumerate(crops + scenes):
            zf.writestr(f"study/{index:03d}_{path.name}", path.read_bytes())
    return buffer.getvalue()


def s3_event(key: str, size: int) -> dict:
    return s3_event_for(key, size, INPUTS)


def sqs_event(message: dict, queue_arn: str) -> dict:
    """The event the SQS event source mapping hands the function for one received message."""
    event = json.loads((EVENTS / "sqs_collection_chunk.json").read_text())
    record = event["Records"][0]
    record.update(messageId=message["MessageId"], receiptHandle=message["ReceiptHandle"], body=message["Body"],
                  md5OfBody=message["MD5OfBody"], eventSourceARN=queue_arn,
                  attributes={k: v for k, v in message.get("Attributes", {}).items()})
    return event


def _killable_worker(event: dict, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    """A chunk worker in its own process (spawned: a fresh interpreter, as a Lambda sandbox is)."""
    from emotion.jobs import collection_worker
    from emotion.jobs.collection import _analyse_chunk

    def analyse_then_signal(*args, **kwargs):  # the parent kills us while the chunk is being analysed
        ready.set()
        return _analyse_chunk(*args, **kwargs)

    collection_worker.process_chunk.__globals__["_analyse_chunk"] = analyse_then_signal
    collection_worker.handler(event, LambdaContext())


def drain(aws: dict, job_id: str, duplicate_chunk: int, killed_chunk: int) -> dict[int, int]:
    """Deliver every message as the event source mapping does, with one lost delete and one killed worker.
    Returns chunk → deliveries seen."""
    from emotion.jobs import collection_worker
    from emotion.jobs.service import read_record

    sqs, url = aws["sqs"], aws["queue_url"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    deliveries: dict[int, int] = {}
    deadline = time.time() + 600
    while time.time() < deadline and read_record(job_id)["status"] == "processing":
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                       AttributeNames=["All"]).get("Messages", [])
        for message in messages:
            chunk = json.loads(message["Body"])["chunk"]
            deliveries[chunk] = deliveries.get(chunk, 0) + 1
            event = sqs_event(message, arn)
            if chunk == killed_chunk and deliveries[chunk] == 1:
                spawn = multiprocessing.get_context("spawn")
                ready = spawn.Event()
                child = spawn.Process(target=_killable_worker, args=(event, ready))
                child.start()
                assert ready.wait(120), "the child worker never started its chunk"
                time.sleep(0.3)
                os.kill(child.pid, signal.SIGKILL)  # mid-chunk: no result written, the message not deleted
                child.join(10)
                assert child.exitcode == -signal.SIGKILL
                assert not aws["s3"].list_objects_v2(Bucket=RESULTS, Prefix=f"results/{job_id}/chunks/{chunk:05d}-")\
                    .get("Contents"), "the killed worker must not have finished its chunk"
                continue
            response = collection_worker.handler(event, LambdaContext())
            assert response == {"batchItemFailures": []}
            if chunk == duplicate_chunk and deliveries[chunk] == 1:
                continue  # the delete is lost: SQS delivers this chunk again after its visibility timeout
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return deliveries


def local_flow(data: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, bytes, dict]:
    """The same archive through the local storage and the same plan / chunk / merge, chunks run in line."""
    from emotion.jobs import collection, service
    from emotion.storage.local import LocalStorage

    storage = LocalStorage(tmp_path / "local-flow")
    monkeypatch.setattr(collection, "chunk_sender", lambda: lambda job_id, chunks: [
        collection.process_chunk(job_id, chunk, storage) for chunk in chunks])
    created = service.create_job("study.zip", "application/zip", len(data), storage)
    key = created["upload"]["fields"]["key"]
    storage.put_bytes("inputs", key, data, "application/zip")
    assert service.process_upload(key, storage) == "planned"
    record = service.read_record(created["job_id"], storage)
    assert record["status"] == "succeeded"
    files = collection.file_keys(created["job_id"])
    return (storage.get_bytes("results", files["results_jsonl"]) or b"",
            storage.get_bytes("results", files["faces_csv"]) or b"",
            json.loads(storage.get_bytes("results", files["summary_json"]) or b"{}"))


def without_timings(jsonl: bytes) -> list[dict]:
    rows = [json.loads(line) for line in jsonl.decode().splitlines()]
    for row in rows:
        row.pop("timings_ms", None)
    return rows


def test_500_images_in_chunks_through_s3_and_sqs(aws: dict, shared_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from emotion.api.app import create_app
    from emotion.jobs.s3_trigger import handler as s3_trigger

    data = archive(shared_dir)
    with TestClient(create_app()) as client:
        created = client.post("/v1/jobs", json={"filename": "study.zip", "content_type": "application/zip",
                                                "size": len(data)})
        assert created.status_code == 201, created.text
        job = created.json()
        upload = job["upload"]
        assert upload["fields"]["key"].endswith("/input.collection")
        posted = requests.post(upload["url"], data=upload["fields"],
                               files={"file": ("study.zip", data, "application/zip")}, timeout=60)
        assert posted.status_code == 204, posted.text
        assert client.get(f"/v1/jobs/{job['job_id']}").json()["collection"]["total"] is None

        planned = s3_trigger(s3_event(upload["fields"]["key"], len(data)), LambdaContext())
        assert planned["records"][0]["outcome"] == "planned"
        again = s3_trigger(s3_event(upload["fields"]["key"], len(data)), LambdaContext())  # S3 delivers twice
        assert again["records"][0]["outcome"] == "duplicate"
        status = client.get(f"/v1/jobs/{job['job_id']}").json()
        assert status["status"] == "processing"
        assert status["collection"] == {"total": IMAGES, "done": 0, "failed": 0, "chunks": IMAGES // CHUNK,
                                        "chunks_done": 0}

        deliveries = drain(aws, job["job_id"], duplicate_chunk=3, killed_chunk=6)
        assert sorted(deliveries) == list(range(IMAGES // CHUNK))
        assert deliveries[3] == 2 and deliveries[6] == 2
        assert all(count == 1 for chunk, count in deliveries.items() if chunk not in (3, 6))

        status = client.get(f"/v1/jobs/{job['job_id']}").json()
        assert status["status"] == "succeeded", status
        assert status["collection"]["done"] == IMAGES and status["collection"]["chunks_done"] == IMAGES // CHUNK
        files = {name: requests.get(url, timeout=30) for name, url in status["files"].items()}
    assert all(r.status_code == 200 for r in files.values())
    chunk_keys = aws["s3"].list_objects_v2(Bucket=RESULTS, Prefix=f"results/{job['job_id']}/chunks/")["Contents"]
    assert len(chunk_keys) == IMAGES // CHUNK  # one result per chunk, however often it was delivered
    assert aws["sqs"].get_queue_attributes(QueueUrl=aws["dlq_url"], AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"]["ApproximateNumberOfMessages"] == "0"

    local_jsonl, local_csv, local_summary = local_flow(data, tmp_path, monkeypatch)
    aws_rows, local_rows = without_timings(files["results_jsonl"].content), without_timings(local_jsonl)
    assert len(aws_rows) == len(local_rows) == IMAGES
    for mine, theirs in zip(aws_rows, local_rows, strict=True):
        assert mine == theirs, mine["name"]
    assert files["faces_csv"].content.decode().splitlines() == local_csv.decode().splitlines()
    assert files["summary_json"].json() == local_summary == status["result"]
    assert local_summary["images"] == IMAGES and local_summary["faces"] >= 450


def test_malformed_chunk_messages_are_dropped(aws: dict) -> None:
    from emotion.jobs import collection_worker

    event = json.loads((EVENTS / "sqs_collection_chunk.json").read_text())
    bad = []
    for body in ("not json", json.dumps({"job_id": "../x", "chunk": 0}), json.dumps({"job_id": "a" * 32}),
                 json.dumps({"job_id": "a" * 32, "chunk": -1}), json.dumps([1, 2])):
        record = copy.deepcopy(event["Records"][0])
        record["body"] = body
        bad.append(record)
    # A well-formed message for a job that does not exist is done with at once (nothing to retry).
    unknown = copy.deepcopy(event["Records"][0])
    unknown["body"] = json.dumps({"job_id": "b" * 32, "chunk": 0})
    assert collection_worker.handler({"Records": [*bad, unknown]}, LambdaContext()) == {"batchItemFailures": []}
