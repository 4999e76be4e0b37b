"""``emotion.Client``: the library's results from a deployed service (or ``emotion serve``) over HTTP.

>>> client = emotion.Client("https://abc.execute-api.eu-west-1.amazonaws.com/prod", api_key="...")  # doctest: +SKIP
>>> client.analyze("photo.jpg").faces[0].dominant_emotion                                             # doctest: +SKIP
>>> study = client.analyze_collection(["frames/"], progress=True)                                      # doctest: +SKIP
>>> study.summary["dominant_emotions"], study.images[0].result                                        # doctest: +SKIP

``analyze`` answers the same :class:`~emotion.core.results.AnalysisResult` as ``Analyzer.analyze``; the
collection's images are the same results, one per image, in the archive's order. The service's errors are
raised as the core's typed errors when the code is one of them (``UnsupportedMediaType``, ``ImageTooLarge``...),
else as :class:`ServiceError`, with the service's code, message and HTTP status.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3
from pydantic import BaseModel, Field

from emotion.core import errors as core_errors
from emotion.core.errors import BadParameter, EmotionError, InputNotFound
from emotion.core.image_input import ImageInput, read_file
from emotion.core.results import AnalysisResult, ErrorBody

RESULT_FILES = {"results_jsonl": "results.jsonl", "faces_csv": "faces.csv", "summary_json": "summary.json"}


class ServiceError(EmotionError):
    """An error answer of the service (or an unreachable one) whose code is not one of the core's errors."""

    def __init__(self, code: str, message: str, status: int):
        super().__init__(message)
        self.code = code
        self.status = status


class CollectionImage(BaseModel):
    """One image of a collection: its name in the archive and its result, or why it failed."""

    name: str
    result: AnalysisResult | None = None
    error: ErrorBody | None = None


class CollectionResult(BaseModel):
    job_id: str
    images: list[CollectionImage] = Field(description="one per file of the archive, in its order")
    summary: dict[str, Any] = Field(description="summary.json: counts, failures, dominant emotions, means")


def _error_for(code: str, message: str, status: int) -> EmotionError:
    for value in vars(core_errors).values():
        if isinstance(value, type) and issubclass(value, EmotionError) and value is not EmotionError \
                and getattr(value, "code", None) == code:
            return value(message)
    return ServiceError(code, message, status)


class Client:
    """A deployed emotion service at ``url`` (the API's base URL, e.g. the stack's ``ApiUrl`` output).

    ``api_key`` is sent as ``x-api-key`` to the service only (never to the storage links it hands out).
    ``timeout_s`` bounds each HTTP request; ``poll_s`` is how often a collection's status is read.
    """

    def __init__(self, url: str, api_key: str | None = None, *, timeout_s: float = 60.0, poll_s: float = 1.0):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BadParameter(f"{url!r} is not an http(s) URL of the service")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.poll_s = poll_s
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(total=timeout_s),
                                         retries=urllib3.Retry(total=3, backoff_factor=0.5, allowed_methods={"GET"},
                                                               status_forcelist=(502, 503, 504)))

    # -- plumbing -----------------------------------------------------------------------------------------

    def _headers(self, url: str) -> dict[str, str]:
        ours = urlsplit(url).netloc == urlsplit(self.url).netloc
        return {"x-api-key": self.api_key} if self.api_key and ours else {}

    def _request(self, method: str, url: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        url = url if url.startswith(("http://", "https://")) else self.url + url
        headers = {**self._headers(url), **kwargs.pop("headers", {})}
        try:
            response = self._http.request(method, url, headers=headers, **kwargs)
        except urllib3.exceptions.HTTPError as exc:
            raise ServiceError("service_unreachable", f"{method} {url}: {type(exc).__name__}: {exc}", 503) from exc
        if response.status >= 400:
            try:
                body = json.loads(response.data)["error"]
                code, message = str(body["code"]), str(body["message"])
            except (ValueError, KeyError, TypeError):
                code, message = "http_error", f"{method} {url} answered {response.status}"
            raise _error_for(code, message, response.status)
        return response

    def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        return json.loads(self._request(method, url, **kwargs).data)

    # -- one image ----------------------------------------------------------------------------------------

    def analyze(self, image: ImageInput, *, rgb: bool = False, classifier: str | None = None) -> AnalysisResult:
        """Every face in ``image`` (a path, encoded bytes, a BGR numpy array or ``rgb=True``, a PIL image),
        analysed by the service's ``POST /v1/analyze``."""
        data = _encoded(image, rgb)
        query = f"?classifier={classifier}" if classifier else ""
        body = self._json("POST", f"/v1/analyze{query}", body=data,
                          headers={"content-type": "application/octet-stream"})
        return AnalysisResult.model_validate(body)

    # -- many images --------------------------------------------------------------------------------------

    def analyze_collection(self, paths_or_zip: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                           progress: bool = True, out: str | os.PathLike[str] | None = None,
                           timeout_s: float = 24 * 3600) -> CollectionResult:
        """Many images in one collection job: a ZIP or tar archive as it is, or image files and folders
        (searched recursively) packed into a ZIP on the way. ``progress``: a progress bar on stderr.
        ``out``: also write ``results.jsonl``, ``faces.csv`` and ``summary.json`` into this folder."""
        with tempfile.TemporaryDirectory(prefix="emotion-client-") as tmp:
            archive, content_type = _archive_of(paths_or_zip, Path(tmp))
            size = archive.stat().st_size
            job = self._json("POST", "/v1/jobs", json={"filename": archive.name, "content_type": content_type,
                                                       "size": size})
            upload = job["upload"]
            fields: dict[str, Any] = dict(upload["fields"])
            fields["file"] = (archive.name, archive.read_bytes(), content_type)
            self._request("POST", upload["url"], fields=fields, timeout=urllib3.Timeout(total=None, connect=30))
        status = self._wait(job["status_url"], progress, timeout_s)
        files = {name: self._request("GET", url).data for name, url in status["files"].items()}
        if out is not None:
            folder = Path(out)
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (folder / RESULT_FILES[name]).write_bytes(data)
        images = []
        for line in files["results_jsonl"].decode().splitlines():
            row = json.loads(line)
            name, error = row.pop("name"), row.pop("error", None)
            images.append(CollectionImage(name=name, error=error, result=None if error else row))
        return CollectionResult(job_id=job["job_id"], images=images, summary=json.loads(files["summary_json"]))

    def _wait(self, status_url: str, progress: bool, timeout_s: float) -> dict[str, Any]:
        from tqdm import tqdm

        deadline = time.monotonic() + timeout_s
        with tqdm(total=None, unit="img", desc="collection", disable=not progress, dynamic_ncols=True) as bar:
            while True:
                status = self._json("GET", status_url)
                counts = status.get("collection") or {}
                if counts.get("total") and bar.total != counts["total"]:
                    bar.total = counts["total"]
                    bar.refresh()
                bar.update(max(0, int(counts.get("done") or 0) - bar.n))
                if counts.get("failed"):
                    bar.set_postfix(failed=counts["failed"], refresh=False)
                if status["status"] == "succeeded":
                    return dict(status)
                if status["status"] == "failed":
                    error = status.get("error") or {}
                    raise _error_for(error.get("code", "job_failed"), error.get("message", "the job failed"), 422)
                if time.monotonic() > deadline:
                    raise ServiceError("timeout", f"the collection did not finish in {timeout_s:g} s "
                                       f"({status_url})", 504)
                time.sleep(self.poll_s)


def _encoded(image: ImageInput, rgb: bool) -> bytes:
    """Bytes to send: files and encoded bytes as they are, arrays and PIL images as PNG (lossless)."""
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    if isinstance(image, str | os.PathLike):
        return read_file(image)
    from emotion.core.image_input import load_image
    from emotion.core.imageio import encode_image
    from emotion.settings import get_settings

    settings = get_settings()
    return encode_image(load_image(image, rgb=rgb, max_pixels=settings.max_pixels, max_side=settings.max_side), "png")


def _archive_of(items: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], tmp: Path) -> tuple[Path, str]:
    """(archive path, content type): one ZIP or tar as given, else the images packed into a stored ZIP whose
    names are relative to each folder named (or the file's own name)."""
    from emotion.jobs.archive import sniff_archive
    from emotion.paths import IMAGE_SUFFIXES

    paths = [Path(items)] if isinstance(items, str | os.PathLike) else [Path(p) for p in items]
    if not paths:
        raise BadParameter("name at least one image, folder or archive")
    for path in paths:
        if not path.exists():
            raise InputNotFound(f"no such file or folder: {path}")
    if len(paths) == 1 and paths[0].is_file():
        with paths[0].open("rb") as fh:
            kind = sniff_archive(fh.read(512))
        if kind is not None:
            return paths[0], "application/zip" if kind == "zip" else "application/x-tar"
    archive = tmp / "collection.zip"
    count = 0
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for path in paths:
            if path.is_dir():
                files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
                members = [(p, f"{path.name}/{p.relative_to(path).as_posix()}") for p in files]
            else:
                members = [(path, path.name)]
            for file, name in members:
                zf.write(file, name)
                count += 1
    if count == 0:
        raise BadParameter(f"no images found in {', '.join(map(str, paths))} (by extension: "
                           f"{', '.join(IMAGE_SUFFIXES)})")
    return archive, "application/zip"
