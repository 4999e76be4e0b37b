"""Model fetching: a real local HTTP server for the download path, sha256 verification, atomic writes."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from emotion.core.manifest import load_manifest
from emotion.model.fetch import FetchError, fetch_models, fetch_one

YUNET = "face_detection_yunet_2023mar.onnx"


@pytest.fixture()
def http_root(tmp_path, shared_dir):
    """A directory served over HTTP on 127.0.0.1; yields (root dir, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[assignment]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _spec_with_urls(*urls):
    return load_manifest().get("yunet").model_copy(update={"urls": list(urls)})


def test_download_verifies_and_writes(http_root, shared_dir, tmp_path):
    root, base = http_root
    shutil.copy(shared_dir / "models" / YUNET, root / YUNET)
    dest = tmp_path / "models"
    result = fetch_one(_spec_with_urls(f"{base}/{YUNET}"), dest)
    assert result.action == "downloaded"
    assert (dest / YUNET).read_bytes() == (shared_dir / "models" / YUNET).read_bytes()
    assert fetch_one(_spec_with_urls(f"{base}/{YUNET}"), dest).action == "present"


def test_falls_back_to_the_next_url(http_root, shared_dir, tmp_path):
    root, base = http_root
    shutil.copy(shared_dir / "models" / YUNET, root / YUNET)
    result = fetch_one(_spec_with_urls(f"{base}/missing.onnx", f"{base}/{YUNET}"), tmp_path / "m")
    assert result.source.endswith(YUNET)


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "html_page"])
def test_corrupted_download_is_refused_and_leaves_nothing(http_root, shared_dir, tmp_path, damage):
    root, base = http_root
    data = bytearray((shared_dir / "models" / YUNET).read_bytes())
    if damage == "flip_byte":
        data[1000] ^= 0xFF
    elif damage == "truncate":
        data = data[:-10]
    else:
        data = bytearray(b"<html><body>Moved</body></html>")
    (root / YUNET).write_bytes(bytes(data))
    dest = tmp_path / "models"
    with pytest.raises(FetchError, match="refused|sha256|bytes"):
        fetch_one(_spec_with_urls(f"{base}/{YUNET}"), dest)
    assert not any(dest.iterdir())  # no partial or temp file left behind


def test_mirror_copy_and_wrong_file_in_mirror(shared_dir, tmp_path):
    dest = tmp_path / "models"
    results = fetch_models(dest, shared_dir / "models")
    actions = {r.name: r.action for r in results}
    assert actions["yunet"] == actions["mobilefacenet"] == actions["mini_xception"] == "copied"
    assert actions["ferplus"] == "bundled"  # our own model ships inside the package
    # Derived graphs are built at fetch time, next to their verified source.
    assert (dest / "face_detection_yunet_2023mar.dynamic_hw.onnx").is_file()

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / YUNET).write_bytes((shared_dir / "models" / "fer2013_mini_xception.onnx").read_bytes())
    with pytest.raises(FetchError, match="refused"):
        fetch_models(tmp_path / "other", mirror, ["yunet"])


def test_damaged_installed_file_is_replaced(shared_dir, tmp_path):
    dest = tmp_path / "models"
    fetch_models(dest, shared_dir / "models", ["yunet"])
    (dest / YUNET).write_bytes(b"garbage")
    assert fetch_models(dest, shared_dir / "models", ["yunet"])[0].action == "copied"


def test_no_url_and_no_mirror_is_a_clear_error(tmp_path):
    with pytest.raises(FetchError, match="--from"):
        fetch_one(load_manifest().get("mini_xception"), tmp_path / "m")


def test_engine_refuses_a_tampered_model(shared_dir, tmp_path, monkeypatch):
    from emotion.core.engine import clear_engines, get_engine
    from emotion.core.errors import ModelUnavailable
    from emotion.settings import get_settings

    dest = tmp_path / "models"
    fetch_models(dest, shared_dir / "models")
    path = Path(dest / "fer2013_mini_xception.onnx")
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    path.write_bytes(bytes(data))
    monkeypatch.setenv("EMOTION_MODEL_DIR", str(dest))
    get_settings.cache_clear()
    clear_engines()
    try:
        with pytest.raises(ModelUnavailable, match="sha256"):
            get_engine("mini_xception")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        clear_engines()
