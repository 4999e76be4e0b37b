"""Build DIR/<ferplus_majority>/<image> (symlinks) from fer2013_publictest/labels.csv for eval-classify."""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def build(shared: Path, out: Path, source: str = "image") -> int:
    """source: "image" (the FER2013 JPEG crops) or "ferplus_png" (FER+'s lossless PNGs of the same faces)."""
    root = shared / "data" / "fer2013_publictest"
    count = 0
    with (root / "labels.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            label = row["ferplus_majority"].strip()
            if not label:
                continue
            target = out / label / Path(row[source]).name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to((root / row[source]).resolve())
            count += 1
    return count


if __name__ == "__main__":
    print(build(Path(sys.argv[1]), Path(sys.argv[2]), *(sys.argv[3:4] or ["image"])))
