"""Browser fixtures: `emotion serve` on a free loopback port (once per session) and a real Chromium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from emotion.api.server import serve_in_subprocess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def serve_fresh(data_dir: Path, **settings: str) -> Iterator[str]:
    """`emotion serve --port 0` in a subprocess on its own data dir (no API key unless `settings` sets
    EMOTION_API_KEY, extra EMOTION_* settings); yields the URL it prints once it is ready."""
    env = {k: v for k, v in os.environ.items() if k != "EMOTION_API_KEY"}
    env.update(EMOTION_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1", **settings)
    try:
        with serve_in_subprocess(env) as (url, _proc):
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve_fresh(tmp_path_factory.mktemp("emotion-data"))


def launch(playwright, profile: Path, extra_args: list[str] | None = None, **options):
    """A persistent Chromium context on the system browser (never a downloaded one)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: apt-get install chromium (make system-deps)")
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *(extra_args or [])],
        **options,
    )


# Package scope: Playwright's sync API keeps an event loop running on the main thread while it is open,
# which would break asyncio.run() in the tests collected after this folder.
@pytest.fixture(scope="package")
def playwright_instance():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: apt-get install chromium (make system-deps)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser_context(playwright_instance, tmp_path_factory: pytest.TempPathFactory):
    """One Chromium for the page tests (each test opens its own page and sets its own viewport)."""
    context = launch(playwright_instance, tmp_path_factory.mktemp("chromium-profile"),
                     viewport={"width": 1280, "height": 800})
    try:
        yield context
    finally:
        context.close()


def block_external(page, server: str) -> list[str]:
    """Abort every request that does not go to the server (or stay in the page); returns the blocked URLs."""
    blocked: list[str] = []

    def handle(route) -> None:
        url = route.request.url
        if url.startswith(server) or url.startswith(("blob:", "data:")):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    page.route("**/*", handle)
    return blocked
