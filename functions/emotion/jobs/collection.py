"""Collection jobs: one archive of many photos → ``results.jsonl``, ``faces.csv`` and ``summary.json``.

The flow, the same locally and on AWS (only the chunk queue differs):

1. **plan** (the upload's worker, :func:`plan`): the archive is checked as a whole (:mod:`emotion.jobs.archive`),
   its files are cut into chunks of at most ``collection_chunk_images`` images and ``collection_chunk_bytes``
   bytes, each chunk's images (and the error rows of refused entries) are written as one small tar
   (``uploads/{id}/chunks/{n}.tar``), and one message per chunk is sent to the chunk queue (SQS on AWS, the
   embedded worker's thread pool locally).
2. **chunk** (:func:`process_chunk`, the chunk worker, many at once): analyses its images and writes one
   result object ``results/{id}/chunks/{n}-{failed}.jsonl``, once (a redelivered chunk that is already done
   does nothing; a chunk whose worker died leaves nothing and is simply done again).
3. **merge** (:func:`merge`): the worker that finds every chunk done writes the three result files and marks
   the job succeeded. Merging is deterministic, so two workers merging at once write the same files.

Nothing waits forever: the sweep (:func:`sweep_collection`) merges a collection whose chunks are all done, sends
the missing chunks again when no chunk has finished for ``job_stale_s`` (at most ``job_max_attempts`` times),
then fails it (``processing_abandoned``, naming the missing chunks). Progress (``done`` / ``total`` images,
``failed``) is read from the chunk result keys, so chunk workers never write the shared job record.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from emotion.core.errors import EmotionError
from emotion.jobs.archive import Entry, EntryError, Limits, open_archive
from emotion.settings import get_settings
from emotion.storage import INPUTS, RESULTS, Storage, get_storage
from emotion.storage.base import PreconditionFailed
from emotion.tables import Summary, csv_header, csv_lines

log = logging.getLogger(__name__)

CHUNK_RESULT = re.compile(r"^results/[0-9a-f]{32}/chunks/(\d{5})-(\d+)\.jsonl$")
MANIFEST = "manifest.json"
#: Pixels decoded and held at once while a chunk is analysed (images are analysed in groups up to this).
GROUP_PIXELS = 48_000_000
GROUP_IMAGES = 8

ChunkSender = Callable[[str, list[int]], None]


def chunk_input_key(job_id: str, chunk: int) -> str:
    return f"uploads/{job_id}/chunks/{chunk:05d}.tar"


def chunk_prefix(job_id: str) -> str:
    return f"results/{job_id}/chunks/"


def chunk_result_key(job_id: str, chunk: int, failed: int) -> str:
    return f"{chunk_prefix(job_id)}{chunk:05d}-{failed}.jsonl"


def file_keys(job_id: str) -> dict[str, str]:
    """The three result files of a collection."""
    return {"results_jsonl": f"results/{job_id}/results.jsonl", "faces_csv": f"results/{job_id}/faces.csv",
            "summary_json": f"results/{job_id}/summary.json"}


def heartbeat_key(job_id: str) -> str:
    return f"jobs/{job_id}.heartbeat"


def limits() -> Limits:
    settings = get_settings()
    return Limits(max_entries=settings.collection_max_images,
                  max_uncompressed_bytes=settings.collection_max_uncompressed_bytes,
                  max_ratio=settings.collection_max_ratio, max_entry_bytes=settings.job_image_max_bytes)


# ------------------------------------------------------------------------------------------------- plan


def plan(record: dict[str, Any], source: Path, storage: Storage, send: ChunkSender | None = None) -> None:
    """Check the archive at ``source``, write its chunks, record the plan, queue every chunk.

    Raises :class:`ArchiveRefused` (the job fails with its code) for an archive that cannot be processed.
    Safe to run again for the same job (a redelivered upload): the chunks are written the same and queued
    again; chunks already done are not done twice.
    """
    from emotion.jobs.service import write_record

    settings = get_settings()
    job_id = record["job_id"]
    sizes: list[int] = []
    with open_archive(source, limits()) as archive:
        for chunk, entries in enumerate(_chunks(archive.entries, settings.collection_chunk_images,
                                                settings.collection_chunk_bytes)):
            with tempfile.NamedTemporaryFile(suffix=".tar", dir=source.parent) as tmp:
                _write_chunk(archive, entries, Path(tmp.name))
                storage.upload(INPUTS, chunk_input_key(job_id, chunk), Path(tmp.name), "application/x-tar")
            sizes.append(len(entries))
        skipped = archive.skipped
    record.update(stage="chunks", total=sum(sizes), chunk_sizes=sizes, skipped=skipped, progress=0.0)
    write_record(record, storage)
    storage.put_bytes(RESULTS, heartbeat_key(job_id), str(time.time()).encode(), "text/plain")
    (send or chunk_sender())(job_id, list(range(len(sizes))))
    log.info("collection planned", extra={"job_id": job_id, "images": sum(sizes), "chunks": len(sizes)})


def _chunks(entries: list[Entry], max_images: int, max_bytes: int) -> Iterator[list[Entry]]:
    current: list[Entry] = []
    size = 0
    for entry in entries:
        cost = entry.size if entry.error is None else 0
        if current and (len(current) >= max_images or size + cost > max_bytes):
            yield current
            current, size = [], 0
        current.append(entry)
        size += cost
    if current:
        yield current


def _write_chunk(archive: Any, entries: list[Entry], path: Path) -> None:
    """A tar: ``manifest.json`` (name and error of each entry, in order), then one member per readable entry."""
    items = []
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        payloads = []
        for entry in entries:
            item: dict[str, Any] = {"index": entry.index, "name": entry.name, "error": entry.error}
            if entry.error is None:
                try:
                    payloads.append((f"{entry.index:06d}", archive.read(entry)))
                except EntryError as exc:
                    item["error"] = exc.error
            items.append(item)
        _add(tar, MANIFEST, json.dumps(items).encode())
        for member, data in payloads:
            _add(tar, member, data)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def chunk_sender() -> ChunkSender:
    """Where chunks go: SQS (``collection_queue_url``) with S3 storage, the embedded worker locally."""
    settings = get_settings()
    if settings.storage == "s3":
        from emotion.storage.sqs import ChunkQueue

        return ChunkQueue(settings.collection_queue_url).send
    from emotion.jobs.worker import worker

    return worker.submit_chunks


# ------------------------------------------------------------------------------------------------- chunks


def done_chunks(job_id: str, storage: Storage) -> dict[int, int]:
    """chunk number → failed images, for every chunk with a result (the first key of each, if repeated)."""
    done: dict[int, int] = {}
    for key in storage.list_keys(RESULTS, chunk_prefix(job_id)):
        match = CHUNK_RESULT.fullmatch(key)
        if match:
            done.setdefault(int(match.group(1)), int(match.group(2)))
    return done


def _chunk_result(job_id: str, chunk: int, storage: Storage) -> str | None:
    for key in storage.list_keys(RESULTS, f"{chunk_prefix(job_id)}{chunk:05d}-"):
        if CHUNK_RESULT.fullmatch(key):
            return key
    return None


def process_chunk(job_id: str, chunk: int, storage: Storage | None = None) -> str:
    """Analyse one chunk once; merge when it was the last. Returns what happened (for logs and tests).

    Raises only for infrastructure failures (storage unreachable, the process dying): the queue delivers the
    chunk again. Bad images are rows with an error code, never exceptions.
    """
    from emotion.jobs.service import read_record

    storage = storage or get_storage()
    record = read_record(job_id, storage)
    if record is None or record.get("kind") != "collection" or record.get("stage") != "chunks":
        log.warning("chunk for no planned collection", extra={"job_id": job_id, "chunk": chunk})
        return "unknown_job"
    if not 0 <= chunk < len(record["chunk_sizes"]):
        return "unknown_chunk"
    if record["status"] != "processing":
        return "duplicate"
    if _chunk_result(job_id, chunk, storage) is None:
        lines, failed = _analyse_chunk(record, chunk, storage)
        storage.put_bytes(RESULTS, chunk_result_key(job_id, chunk, failed), "".join(lines).encode(),
                          "application/x-ndjson")
        storage.put_bytes(RESULTS, heartbeat_key(job_id), str(time.time()).encode(), "text/plain")
        outcome = "done"
    else:
        outcome = "duplicate"
    if len(done_chunks(job_id, storage)) == len(record["chunk_sizes"]):
        merge(record, storage)
        return "merged"
    return outcome


def _analyse_chunk(record: dict[str, Any], chunk: int, storage: Storage) -> tuple[list[str], int]:
    from emotion.core.engine import default_options, get_engine
    from emotion.core.imageio import decode_image
    from emotion.jobs.service import job_temp_dir

    settings = get_settings()
    engine = get_engine(record.get("classifier"))
    options = default_options()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="emotion-chunk-", dir=job_temp_dir()) as tmp:
        path = Path(tmp) / "chunk.tar"
        storage.download(INPUTS, chunk_input_key(record["job_id"], chunk), path)
        with tarfile.open(path, "r:") as tar:
            items = json.loads(_member(tar, MANIFEST))
            group: list[tuple[dict[str, Any], Any, float]] = []
            pixels = 0

            def flush() -> None:
                nonlocal pixels
                if group:
                    results = engine.analyze_arrays([bgr for _, bgr, _ in group], options)
                    for (row, _, decode_ms), result in zip(group, results, strict=True):
                        body = result.model_dump()
                        body["timings_ms"]["decode"] = round(decode_ms, 2)
                        body["timings_ms"]["total"] = round(body["timings_ms"]["total"] + decode_ms, 2)
                        row.update(body)
                    group.clear()
                    pixels = 0

            for item in items:
                row: dict[str, Any] = {"name": item["name"]}
                rows.append(row)
                if item["error"] is not None:
                    row["error"] = item["error"]
                    continue
                started = time.perf_counter()
                try:
                    bgr = decode_image(_member(tar, f"{item['index']:06d}"), settings.max_pixels, settings.max_side)
                except EmotionError as exc:
                    row["error"] = {"code": exc.code, "message": exc.message}
                    continue
                group.append((row, bgr, (time.perf_counter() - started) * 1000))
                pixels += bgr.shape[0] * bgr.shape[1]
                if len(group) >= GROUP_IMAGES or pixels >= GROUP_PIXELS:
                    flush()
            flush()
    failed = sum(1 for row in rows if "error" in row)
    return [json.dumps(row, separators=(",", ":")) + "\n" for row in rows], failed


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    handle = tar.extractfile(name)
    if handle is None:  # pragma: no cover - chunk tars are our own
        raise ValueError(f"chunk member {name} missing")
    return handle.read()


# ------------------------------------------------------------------------------------------------- merge


def merge(record: dict[str, Any], storage: Storage) -> None:
    """Write ``results.jsonl``, ``faces.csv`` and ``summary.json`` from the chunk results, in archive order,
    and mark the job succeeded."""
    from emotion.jobs.service import job_temp_dir, write_record

    job_id = record["job_id"]
    summary = Summary()
    keys = file_keys(job_id)
    done = done_chunks(job_id, storage)
    with tempfile.TemporaryDirectory(prefix="emotion-merge-", dir=job_temp_dir()) as tmp:
        jsonl, faces = Path(tmp) / "results.jsonl", Path(tmp) / "faces.csv"
        with jsonl.open("w") as out_jsonl, faces.open("w", newline="") as out_csv:
            out_csv.write(csv_header())
            for chunk in range(len(record["chunk_sizes"])):
                data = storage.get_bytes(RESULTS, chunk_result_key(job_id, chunk, done[chunk]))
                if data is None:  # pragma: no cover - listed a moment ago; results are never deleted
                    raise RuntimeError(f"chunk {chunk} result vanished")
                for line in data.decode().splitlines():
                    row = json.loads(line)
                    name = row.pop("name")
                    summary.add(name, row)
                    out_jsonl.write(line + "\n")
                    out_csv.write(csv_lines(name, row))
        body = {"kind": "collection", **summary.as_dict(), "skipped": record.get("skipped", 0)}
        storage.upload(RESULTS, keys["results_jsonl"], jsonl, "application/x-ndjson")
        storage.upload(RESULTS, keys["faces_csv"], faces, "text/csv")
    storage.put_bytes(RESULTS, keys["summary_json"], json.dumps(body).encode(), "application/json")
    record.update(status="succeeded", progress=1.0, error=None, result_key=keys["summary_json"])
    write_record(record, storage)
    log.info("collection merged", extra={"job_id": job_id, "images": summary.images, "faces": summary.faces})


# ------------------------------------------------------------------------------------------------- status


def progress(record: dict[str, Any], storage: Storage) -> dict[str, Any]:
    """``total`` images, ``done`` images, ``failed`` images and chunks done so far."""
    sizes = record.get("chunk_sizes")
    if sizes is None:  # not planned yet (pending, or the archive is being checked)
        return {"total": None, "done": 0, "failed": 0, "chunks": None, "chunks_done": 0}
    done = done_chunks(record["job_id"], storage)
    return {"total": sum(sizes), "done": sum(sizes[c] for c in done if c < len(sizes)),
            "failed": sum(done.values()), "chunks": len(sizes), "chunks_done": len(done)}


# ------------------------------------------------------------------------------------------------- sweep


def sweep_collection(record: dict[str, Any], storage: Storage, stale_s: float, now: float | None = None,
                     send: ChunkSender | None = None) -> str:
    """A collection in its chunk stage: merge it when every chunk is done; when no chunk has finished for
    ``stale_s``, send the missing chunks again (``job_max_attempts`` rounds), then fail it."""
    from emotion.jobs.service import _age_s, _fail

    settings = get_settings()
    job_id = record["job_id"]
    done = done_chunks(job_id, storage)
    total = len(record["chunk_sizes"])
    if len(done) == total:
        merge(record, storage)
        return "merged"
    beat = storage.get_bytes(RESULTS, heartbeat_key(job_id))
    moment = time.time() if now is None else now
    age = min(_age_s(record.get("updated_at", ""), moment), moment - float(beat) if beat else float("inf"))
    if age < stale_s:
        return "running"
    missing = [c for c in range(total) if c not in done]
    rounds = len(storage.list_keys(RESULTS, f"jobs/{job_id}.resent-"))
    if rounds >= settings.job_max_attempts:
        shown = ", ".join(str(c) for c in missing[:20]) + (" ..." if len(missing) > 20 else "")
        _fail(record, "processing_abandoned", f"{len(missing)} of {total} chunks did not finish after "
              f"{rounds + 1} deliveries (chunks {shown}); create a new job to try again", storage)
        return "failed"
    try:
        storage.put_bytes(RESULTS, f"jobs/{job_id}.resent-{rounds + 1}", b"", "text/plain", if_absent=True)
    except PreconditionFailed:
        return "running"
    storage.put_bytes(RESULTS, heartbeat_key(job_id), str(moment).encode(), "text/plain")
    (send or chunk_sender())(job_id, missing)
    log.info("collection chunks sent again", extra={"job_id": job_id, "chunks": len(missing)})
    return "redelivered"
