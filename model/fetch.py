"""Fetch model files into the model directory: from a local mirror or the manifest URLs, sha256-verified.

Runs at set-up / image-build time only. Nothing downloads at inference time.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from emotion.core.manifest import ModelSpec, bundled_path, load_manifest, sha256_file
from emotion.model.derived import build_derived

log = logging.getLogger(__name__)


class FetchError(Exception):
    """A model could not be obtained or failed verification; nothing was written in its place."""


@dataclass
class FetchResult:
    name: str
    path: Path
    action: str  # "present", "copied", "downloaded", "bundled"
    source: str


def _verify(spec: ModelSpec, path: Path, source: str) -> None:
    size = path.stat().st_size
    if size != spec.size:
        raise FetchError(
            f"{spec.name}: {source} has {size} bytes, expected {spec.size} (wrong or corrupted file refused)"
        )
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise FetchError(
            f"{spec.name}: {source} has sha256 {digest}, expected {spec.sha256} (wrong or corrupted file refused)"
        )


def _install(spec: ModelSpec, dest_dir: Path, write, source: str) -> Path:
    """Write into a temp file beside the target, verify, then rename atomically."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.file}.", dir=dest_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        _verify(spec, tmp, source)
        target = dest_dir / spec.file
        os.replace(tmp, target)
        return target
    finally:
        tmp.unlink(missing_ok=True)


def _download(url: str, out, limit: int, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "emotion-service-model-fetch"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (manifest URLs only)
        received = 0
        while chunk := response.read(1 << 16):
            received += len(chunk)
            if received > limit:
                raise FetchError(f"{url} sends more than {limit} bytes; refused")
            out.write(chunk)


def fetch_one(spec: ModelSpec, dest_dir: Path, source_dir: Path | None = None, timeout: float = 60.0) -> FetchResult:
    """Make ``dest_dir/spec.file`` present and verified; raise FetchError if no source gives the right bytes."""
    target = dest_dir / spec.file
    if target.is_file():
        try:
            _verify(spec, target, str(target))
            return FetchResult(spec.name, target, "present", str(target))
        except FetchError:
            log.warning("%s: existing file fails verification; fetching again", spec.name)

    if spec.bundled:
        src = bundled_path(spec)
        with src.open("rb") as fh:
            path = _install(spec, dest_dir, lambda out: shutil.copyfileobj(fh, out), str(src))
        return FetchResult(spec.name, path, "bundled", str(src))

    if source_dir is not None:
        src = source_dir / spec.file
        if not src.is_file():
            raise FetchError(f"{spec.name}: {src} does not exist")
        with src.open("rb") as fh:
            path = _install(spec, dest_dir, lambda out: shutil.copyfileobj(fh, out), str(src))
        return FetchResult(spec.name, path, "copied", str(src))

    if not spec.urls:
        raise FetchError(f"{spec.name}: no download URL in the manifest; fetch it with --from DIR")
    errors = []
    for url in spec.urls:
        try:
            path = _install(spec, dest_dir, lambda out, u=url: _download(u, out, spec.size + 1, timeout), url)
            return FetchResult(spec.name, path, "downloaded", url)
        except (OSError, FetchError) as exc:
            errors.append(f"{url}: {exc}")
    raise FetchError(f"{spec.name}: every source failed: " + "; ".join(errors))


def fetch_models(
    dest_dir: Path, source_dir: Path | None = None, names: Iterable[str] | None = None, timeout: float = 60.0
) -> list[FetchResult]:
    """Fetch every model of the manifest (or just ``names``) into ``dest_dir``."""
    manifest = load_manifest()
    wanted = list(names) if names else [m.name for m in manifest.models]
    results = []
    for name in wanted:
        spec = manifest.get(name)
        results.append(fetch_one(spec, dest_dir, source_dir, timeout))
        build_derived(spec, dest_dir)
    return results

