"""Shared fixtures: the ../shared folder (setting EMOTION_SHARED_DIR), models fetched from its mirror."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOTION_SHARED_DIR", REPO.parent / "shared")).resolve()
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "models").is_dir():
        pytest.fail(f"shared folder not found at {SHARED}: set EMOTION_SHARED_DIR")
    return SHARED


@pytest.fixture(scope="session")
def model_dir(shared_dir: Path) -> Path:
    """The models, fetched from the shared mirror into the configured model dir (a no-op when present)."""
    from emotion.model.fetch import fetch_models
    from emotion.settings import get_settings

    directory = get_settings().model_dir
    fetch_models(directory, shared_dir / "models")
    return directory


@pytest.fixture(scope="session")
def scenes(shared_dir: Path) -> Path:
    return shared_dir / "data" / "scenes"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
