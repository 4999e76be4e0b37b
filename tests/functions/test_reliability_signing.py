"""Signing keys (issue 12, row 1): created once and atomically, never empty, however many first requests race.

The old code built the storage in an unlocked ``lru_cache`` and created the key with exists → O_EXCL create
→ write → read, so racing first callers got FileExistsError (a 500) or read an empty key (forgeable links).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from emotion.storage.local import MIN_KEY_BYTES, LocalStorage, SigningKeyError, load_signing_key

RACERS = 32


def _race(fn, n: int = RACERS) -> list:
    barrier = threading.Barrier(n)

    def run(_: int):
        barrier.wait()
        return fn()

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_racing_first_constructions_share_one_full_length_key(tmp_path: Path):
    for attempt in range(10):  # fresh data dir each time: the race is on the first creation
        root = tmp_path / f"data{attempt}"
        secrets = {bytes(s._secret) for s in _race(lambda root=root: LocalStorage(root))}
        assert len(secrets) == 1
        key = secrets.pop()
        assert len(key) >= MIN_KEY_BYTES and key == (root / ".signing-key").read_text().strip().encode()
        assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]  # no temp key left behind


def test_racing_first_get_storage_calls_build_one_adapter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from emotion.settings import get_settings
    from emotion.storage import get_storage

    monkeypatch.setenv("EMOTION_STORAGE", "local")
    monkeypatch.setenv("EMOTION_DATA_DIR", str(tmp_path / "fresh"))
    get_settings.cache_clear()
    get_storage.cache_clear()
    try:
        adapters = _race(get_storage)
        assert len({id(a) for a in adapters}) == 1
        assert len(adapters[0]._secret) >= MIN_KEY_BYTES
    finally:
        get_settings.cache_clear()
        get_storage.cache_clear()


@pytest.mark.parametrize("content", ["", "\n", "abc123"])
def test_an_empty_or_short_key_fails_loudly(tmp_path: Path, content: str):
    (tmp_path / ".signing-key").write_text(content)
    with pytest.raises(SigningKeyError, match="fewer than"):
        LocalStorage(tmp_path)
    with pytest.raises(SigningKeyError):
        load_signing_key(tmp_path / ".signing-key")


def test_32_concurrent_first_requests_over_http_on_a_fresh_data_dir(tmp_path: Path, model_dir: Path):
    from emotion.api.server import serve_in_subprocess

    data_dir = tmp_path / "fresh-data"
    env = dict(os.environ, EMOTION_STORAGE="local", EMOTION_DATA_DIR=str(data_dir), EMOTION_MODEL_DIR=str(model_dir))
    env.pop("EMOTION_API_KEY", None)
    body = {"filename": "a.jpg", "content_type": "image/jpeg", "size": 1000}
    with serve_in_subprocess(env) as (base, _proc), httpx.Client(base_url=base, timeout=30) as client:
        responses = _race(lambda: client.post("/v1/jobs", json=body))
        assert [r.status_code for r in responses] == [201] * RACERS, [r.text for r in responses if r.status_code != 201]
        key = (data_dir / ".signing-key").read_text().strip().encode()
        assert len(key) >= MIN_KEY_BYTES
        for response in responses:
            fields = response.json()["upload"]["fields"]
            expected = hmac.new(key, fields["policy"].encode(), hashlib.sha256).hexdigest()
            assert fields["x-amz-signature"] == expected
            forged = hmac.new(b"", fields["policy"].encode(), hashlib.sha256).hexdigest()
            assert forged != fields["x-amz-signature"]
        # A policy signed with an empty key (what the race used to leave) is refused.
        fields = dict(responses[0].json()["upload"]["fields"])
        fields["x-amz-signature"] = hmac.new(b"", fields["policy"].encode(), hashlib.sha256).hexdigest()
        refused = client.post("/v1/uploads", data=fields, files={"file": ("a.jpg", b"x" * 1000, "image/jpeg")})
        assert refused.status_code == 403


def test_a_short_key_stops_emotion_serve_at_start(tmp_path: Path, model_dir: Path):
    import subprocess
    import sys

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / ".signing-key").write_text("")  # what the old race could leave behind
    env = dict(os.environ, EMOTION_STORAGE="local", EMOTION_DATA_DIR=str(data_dir), EMOTION_MODEL_DIR=str(model_dir))
    env.pop("EMOTION_API_KEY", None)
    done = subprocess.run([sys.executable, "-c", "import sys; from emotion.cli import main; sys.exit(main())",
                           "serve", "--port", "0"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "signing key" in done.stdout + done.stderr and "serving http" not in done.stdout
