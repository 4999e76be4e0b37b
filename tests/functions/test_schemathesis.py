"""Property-based requests generated from the app's own OpenAPI schema (schemathesis): never a 5xx.

Every operation of the running app (ASGI, the same app object `emotion serve` runs) gets positive and
negative generated requests with the API key set, so the auth checks run too; the module then checks that
at least 1,000 requests were made in total.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from emotion.api.app import create_app
from emotion.core.engine import get_engine
from emotion.settings import get_settings

API_KEY = "schemathesis-key"
EXAMPLES_PER_OPERATION = 400
MIN_REQUESTS = 1000
OWN_PATHS = {"/v1/analyze", "/v1/annotate", "/v1/models", "/healthz"}
REQUESTS: Counter[str] = Counter()
STATUSES: Counter[int] = Counter()


@pytest.fixture(scope="module", autouse=True)
def keyed_settings(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.setenv("EMOTION_API_KEY", API_KEY)
    mp.setenv("EMOTION_DATA_DIR", str(tmp_path_factory.mktemp("emotion-data")))  # jobs, when present
    get_settings.cache_clear()
    get_engine()  # warm: generated requests measure the API, not model loading
    yield
    mp.undo()
    get_settings.cache_clear()


# Built at import (collection); the API key and models come from the autouse fixture before any request.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_no_server_errors(case) -> None:
    # Binary bodies the schema allows are rarely real photos, so "valid by the schema" need not be a 2xx;
    # every other check runs on this module's operations (no 5xx, documented statuses and content types,
    # response schemas, auth enforced, negative data rejected, unsupported methods, ...). Operations added
    # by other adapters (the jobs router) are held to "no 5xx" here; their own tests check the rest.
    headers = {"x-api-key": API_KEY}
    if case.path in OWN_PATHS:
        response = case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])
    else:
        response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
    REQUESTS[f"{case.method} {case.path}"] += 1
    STATUSES[response.status_code] += 1
    assert response.status_code < 500


def test_enough_generated_requests() -> None:
    total = sum(REQUESTS.values())
    print(f"schemathesis: {total} requests; per operation {dict(REQUESTS)}; statuses {dict(sorted(STATUSES.items()))}")
    assert total >= MIN_REQUESTS, dict(REQUESTS)
    own = sum(n for op, n in REQUESTS.items() if op.split(" ", 1)[1] in OWN_PATHS)
    assert own >= MIN_REQUESTS, dict(REQUESTS)
    assert not [s for s in STATUSES if s >= 500]
