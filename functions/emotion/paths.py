"""Image files named on a command line or to the client: files, folders searched recursively, globs."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif")


def expand_inputs(items: list[str]) -> Iterator[tuple[str, Path | None]]:
    """(name, path) per image: files as given, folders searched recursively by image extension, globs
    expanded (also when the shell did not). A name that matches nothing yields (name, None)."""
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                yield item, None
            for p in found:
                yield str(p), p
        elif not path.exists() and glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file()]
            if not files:
                yield item, None
            for p in files:
                yield str(p), p
        else:
            yield item, path
