"""The sweep finishes or fails stuck collections: a lost merge is done, lost chunks are sent again (a bounded
number of rounds), then the collection fails naming the missing chunks. Local storage, real photos."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from emotion.jobs import collection, service
from emotion.storage.local import LocalStorage


@pytest.fixture()
def planned(tmp_path: Path, shared_dir: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """A planned collection of 6 photos in 3 chunks whose chunk messages were all lost."""
    from emotion.settings import get_settings

    monkeypatch.setenv("EMOTION_COLLECTION_CHUNK_IMAGES", "2")
    monkeypatch.setenv("EMOTION_STORAGE", "local")
    get_settings.cache_clear()
    storage = LocalStorage(tmp_path / "data")
    sent: list[tuple[str, list[int]]] = []
    monkeypatch.setattr(collection, "chunk_sender", lambda: lambda job_id, chunks: sent.append((job_id, chunks)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted((shared_dir / "data" / "ferplus_train").glob("*.png"))[:6]:
            zf.writestr(path.name, path.read_bytes())
    data = buffer.getvalue()
    created = service.create_job("six.zip", "application/zip", len(data), storage)
    key = created["upload"]["fields"]["key"]
    storage.put_bytes("inputs", key, data, "application/zip")
    assert service.process_upload(key, storage) == "planned"
    yield storage, created["job_id"], sent
    get_settings.cache_clear()


def status(storage: LocalStorage, job_id: str) -> dict:
    return service.get_job(job_id, storage)


def test_sweep_leaves_a_running_collection_alone(planned) -> None:
    storage, job_id, sent = planned
    assert sent == [(job_id, [0, 1, 2])]
    assert service.sweep(lambda key: None, storage) == {"redelivered": 0, "failed": 0, "seen": 1}
    assert len(sent) == 1


def test_sweep_sends_lost_chunks_again_then_merges(planned) -> None:
    storage, job_id, sent = planned
    assert collection.process_chunk(job_id, 1, storage) == "done"
    assert status(storage, job_id)["collection"] == {"total": 6, "done": 2, "failed": 0, "chunks": 3,
                                                      "chunks_done": 1}
    counts = service.sweep(lambda key: None, storage, stale_s=0)
    assert counts["redelivered"] == 1 and sent[-1] == (job_id, [0, 2])
    assert collection.process_chunk(job_id, 0, storage) == "done"
    assert collection.process_chunk(job_id, 0, storage) == "duplicate"  # delivered twice: done once
    assert collection.process_chunk(job_id, 2, storage) == "merged"
    view = status(storage, job_id)
    assert view["status"] == "succeeded" and view["result"]["images"] == 6 and view["files"]


def test_sweep_merges_when_the_merging_worker_died(planned, monkeypatch: pytest.MonkeyPatch) -> None:
    storage, job_id, _ = planned
    for chunk in (0, 1):
        collection.process_chunk(job_id, chunk, storage)

    def die(record, storage):
        raise MemoryError("the worker died while merging")

    with monkeypatch.context() as patched:
        patched.setattr(collection, "merge", die)
        with pytest.raises(MemoryError):
            collection.process_chunk(job_id, 2, storage)
    assert status(storage, job_id)["status"] == "processing"
    service.sweep(lambda key: None, storage)  # not stale yet: every chunk is done, so it merges at once
    assert status(storage, job_id)["status"] == "succeeded"


def test_sweep_fails_a_collection_whose_chunks_never_finish(planned) -> None:
    storage, job_id, sent = planned
    for _ in range(2):  # job_max_attempts rounds of sending the missing chunks again
        assert service.sweep(lambda key: None, storage, stale_s=0)["redelivered"] == 1
    assert service.sweep(lambda key: None, storage, stale_s=0)["failed"] == 1
    view = status(storage, job_id)
    assert view["status"] == "failed" and view["error"]["code"] == "processing_abandoned"
    assert "3 of 3 chunks" in view["error"]["message"] and "chunks 0, 1, 2" in view["error"]["message"]
    assert collection.process_chunk(job_id, 0, storage) == "duplicate"  # a late chunk changes nothing
    assert status(storage, job_id)["status"] == "failed"
