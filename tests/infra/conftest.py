"""Session-scoped CDK synths shared by every infra test (synth is slow: do it once per configuration)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Same cache locations as the Makefile, so a bare `pytest tests/infra` behaves like `make test`.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_RUNTIME_PACKAGE_CACHE_ROOT", str(REPO / ".cache" / "jsii"))
os.environ.setdefault("CDK_HOME", str(REPO / ".cache" / "cdk"))
# Environment-agnostic stacks, whatever the developer's shell says.
os.environ.pop("CDK_DEFAULT_ACCOUNT", None)
os.environ.pop("CDK_DEFAULT_REGION", None)

#: Context overrides that differ from cdk.json, so the tests prove each value flows from context.
OVERRIDES: dict[str, Any] = {
    "cors_origins": ["https://app.example.com"],
    "uploads_expiration_days": 2,
    "results_expiration_days": 9,
    "api_rate_limit": 7.0,
    "api_burst_limit": 14,
    "api_quota_per_day": 1234,
    "stage_rate_limit": 33.0,
    "stage_burst_limit": 66,
    "api_memory_mb": 1769,
    "api_timeout_s": 25,
    "api_reserved_concurrency": 11,
    "trigger_memory_mb": 3009,
    "trigger_timeout_s": 600,
    "trigger_reserved_concurrency": 4,
    "trigger_retry_attempts": 1,
    "log_retention_days": 14,
    "architecture": "arm64",
    "batch_max_vcpus": 16,
    "video_job_timeout_s": 1800,
    "video_job_retry_attempts": 3,
    "alarm_email": "ops@example.com",
    "classifier": "ferplus",
}


@dataclass
class Synth:
    """One synthesized app: the construct tree (for cdk-nag) and the stack's template."""

    app: Any
    stack: Any
    template: dict[str, Any]
    template_path: Path
    context: dict[str, Any]

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == type_}

    def one(self, type_: str) -> tuple[str, dict[str, Any]]:
        found = self.resources(type_)
        assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
        return next(iter(found.items()))

    def logical_id(self, construct: Any) -> str:
        return self.stack.resolve(self.stack.get_logical_id(construct.node.default_child))


def cdk_json_context() -> dict[str, Any]:
    return json.loads((REPO / "cdk.json").read_text())["context"]


def _synth(tmp_root: Path, name: str, overrides: dict[str, Any]) -> Synth:
    from infra.app import build_app

    context = {**cdk_json_context(), **overrides}
    outdir = tmp_root / name
    app = build_app(context, outdir=str(outdir), nag=False)
    assembly = app.synth()
    (artifact,) = assembly.stacks
    stack = app.node.find_child(artifact.stack_name)
    template_path = outdir / artifact.template_file
    return Synth(app, stack, artifact.template, template_path, context)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Default app (GPU video on) with the OVERRIDES context."""
    return _synth(tmp_path_factory.mktemp("cdk"), "gpu", OVERRIDES)


@pytest.fixture(scope="session")
def synth_cpu_only(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The smallest deployment: ``gpu_video=false`` (no Batch; every upload goes to the S3-trigger function) and
    ``public_page=false`` (no open web page: every method but GET /healthz needs the key)."""
    return _synth(tmp_path_factory.mktemp("cdk"), "cpu", {"gpu_video": False, "public_page": False})
