"""Build-time check: the default detector and classifier and the identity model are in the model dir with the
manifest's sha256.

Usage: ``python verify_models.py MODEL_DIR``. Exits non-zero (failing the image build) otherwise.
"""

from __future__ import annotations

import hashlib
import json
import sys
from importlib import resources
from pathlib import Path


def main(model_dir: str) -> int:
    """Verify the default models; returns the process exit status."""
    manifest = json.loads(resources.files("emotion.model").joinpath("manifest.json").read_text())
    by_name = {m["name"]: m for m in manifest["models"]}
    wanted = {manifest["default_detector"], manifest["default_classifier"]}
    wanted |= {m["name"] for m in manifest["models"] if m["role"] == "identity"}  # videos link persons with it
    failures = []
    for name in sorted(wanted):
        entry = by_name[name]
        path = Path(model_dir) / entry["file"]
        if not path.is_file():
            failures.append(f"{name}: {path} missing")
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != entry["sha256"]:
            failures.append(f"{name}: sha256 {digest} != manifest {entry['sha256']}")
    for line in failures:
        sys.stderr.write(line + "\n")
    if not failures:
        sys.stdout.write(f"models verified in {model_dir}: {', '.join(sorted(wanted))}\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/opt/models"))
