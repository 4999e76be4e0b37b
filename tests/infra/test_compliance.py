"""cdk-nag AwsSolutions, cfn-lint and the CDK CLI on the synthesized app (no AWS account, no Docker)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.infra.conftest import REPO, Synth

pytestmark = pytest.mark.infra


def _acknowledgements(app) -> dict[str, dict[str, str]]:
    """construct path -> {rule id: reason} for every Validations.acknowledge in the tree."""
    from aws_cdk import Validations

    found: dict[str, dict[str, str]] = {}
    for node in app.node.find_all():
        for entry in node.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY and entry.data:
                found.setdefault(node.node.path, {}).update(entry.data)
    return found


@pytest.mark.parametrize("which", ["synth", "synth_cpu_only"])
def test_cdk_nag_aws_solutions_has_no_unacknowledged_findings(which: str, request: pytest.FixtureRequest) -> None:
    from cdk_nag import AwsSolutionsChecks

    s: Synth = request.getfixturevalue(which)
    report = AwsSolutionsChecks(s.app, verbose=False).validate_scope(s.app)
    findings = {v.rule_name: [r.construct_path for r in v.violating_resources] for v in report.violations}
    assert report.success and not findings, json.dumps(findings, indent=1)


def test_every_acknowledgement_has_a_specific_reason(synth: Synth) -> None:
    # Only cdk-nag rules: CDK itself records some (e.g. CloudFormation-Validate::W3010) on the stack.
    acknowledgements = {
        path: {rule: reason for rule, reason in rules.items() if "AwsSolutions-" in rule}
        for path, rules in _acknowledgements(synth.app).items()
    }
    acknowledgements = {path: rules for path, rules in acknowledgements.items() if rules}
    assert acknowledgements, "expected the documented acknowledgements to be present"
    for path, rules in acknowledgements.items():
        for rule, reason in rules.items():
            assert len(reason) >= 60, f"{path} {rule}: reason too vague: {reason!r}"
    # No blanket acknowledgement at the stack or app level: each sits on the construct it concerns.
    assert synth.stack.node.path not in acknowledgements
    assert "" not in acknowledgements


def test_every_acknowledgement_matches_a_finding(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stale acknowledgements: build the app with acknowledge() recording instead of applying, run cdk-nag,
    and every acknowledged rule id must be among the findings it then reports."""
    import aws_cdk
    from cdk_nag import AwsSolutionsChecks

    from infra.app import build_app
    from tests.infra.conftest import cdk_json_context

    recorded: list[str] = []
    monkeypatch.setattr(aws_cdk.Validations, "acknowledge", lambda self, *rules: recorded.extend(r.id for r in rules))
    app = build_app(cdk_json_context(), outdir=str(tmp_path), nag=False)
    report = AwsSolutionsChecks(app).validate_scope(app)
    findings = {v.rule_name for v in report.violations}
    assert recorded
    assert not set(recorded) - findings, f"acknowledged but never reported: {sorted(set(recorded) - findings)}"


@pytest.mark.parametrize("which", ["synth", "synth_cpu_only"])
def test_cfn_lint_reports_no_errors(which: str, request: pytest.FixtureRequest) -> None:
    s: Synth = request.getfixturevalue(which)
    cfn_lint = shutil.which("cfn-lint", path=str(Path(os.sys.executable).parent)) or shutil.which("cfn-lint")
    assert cfn_lint, "cfn-lint is not installed (pip install -e '.[infra]')"
    result = subprocess.run(
        [cfn_lint, "--format", "json", "--", str(s.template_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    matches = json.loads(result.stdout or "[]")
    errors = [m for m in matches if m["Level"] == "Error" or m["Rule"]["Id"].startswith("E")]
    assert not errors, json.dumps(errors, indent=1)[:4000]


def test_npx_cdk_synth_succeeds_offline(tmp_path: Path) -> None:
    """The operator's command: the CDK CLI from package.json runs infra.app (cdk-nag on) without AWS or Docker."""
    cdk = REPO / "node_modules" / ".bin" / "cdk"
    if not cdk.exists():
        pytest.skip("CDK CLI not installed: `make setup-test` runs `npm ci` (node_modules/.bin/cdk)")
    env = {
        **os.environ,
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_PROFILE": "",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }
    env.pop("CDK_DEFAULT_ACCOUNT", None)
    env.pop("CDK_DEFAULT_REGION", None)
    outdir = tmp_path / "cdk.out"
    result = subprocess.run(
        [str(cdk), "synth", "--quiet", "--no-notices", "--no-version-reporting", "--output", str(outdir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    template = json.loads((outdir / "EmotionService.template.json").read_text())
    assert any(r["Type"] == "AWS::Batch::JobDefinition" for r in template["Resources"].values())
    # Image assets are recorded for `cdk deploy` to build; synth itself never needed a Docker daemon.
    assets = json.loads((outdir / "EmotionService.assets.json").read_text())
    dockerfiles = {a["source"].get("dockerFile") for a in assets.get("dockerImages", {}).values()}
    assert dockerfiles == {"layers/Dockerfile", "layers/gpu.Dockerfile"}
