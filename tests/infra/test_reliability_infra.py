"""Infra for issue 12: a scheduled sweep function with least privilege, and routing by the key the job API
names (never by the client's file name, whose case or script left 10 of 12 name/type pairs unrouted)."""

from __future__ import annotations

from typing import Any

from infra.config import (
    COLLECTION_UPLOAD_SUFFIX,
    GPU_VIDEO_UPLOAD_SUFFIX,
    IMAGE_UPLOAD_SUFFIX,
    SWEEP_HANDLER,
    VIDEO_UPLOAD_SUFFIX,
    Config,
)
from tests.infra.conftest import Synth

SUFFIXES = (IMAGE_UPLOAD_SUFFIX, VIDEO_UPLOAD_SUFFIX, GPU_VIDEO_UPLOAD_SUFFIX, COLLECTION_UPLOAD_SUFFIX)


def _statements(synth: Synth, role: Any) -> list[dict[str, Any]]:
    role_id = synth.logical_id(role)
    out = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_route_suffixes_are_the_keys_the_job_api_names():
    from emotion.storage.base import ROUTES, upload_key

    job_id = "0" * 32
    keys = {route: upload_key(job_id, route) for route in ROUTES}
    assert keys["image"].endswith(IMAGE_UPLOAD_SUFFIX)
    assert keys["video"].endswith(VIDEO_UPLOAD_SUFFIX)
    assert keys["gpu-video"].endswith(GPU_VIDEO_UPLOAD_SUFFIX)
    assert keys["collection"].endswith(COLLECTION_UPLOAD_SUFFIX)
    # No route's key matches another route's filter (S3 suffix filters must not overlap).
    for route, key in keys.items():
        matching = [s for s in SUFFIXES if key.endswith(s)]
        assert len(matching) == 1, (route, matching)


def test_every_route_has_exactly_one_consumer(synth: Synth, synth_cpu_only: Synth):
    for s, batch in ((synth, True), (synth_cpu_only, False)):
        _, notifications = s.one("Custom::S3BucketNotifications")
        lambda_suffixes = [r["Value"] for e in notifications["Properties"]["NotificationConfiguration"]
                           ["LambdaFunctionConfigurations"] for r in e["Filter"]["Key"]["FilterRules"]
                           if r["Name"] == "suffix"]
        assert sorted(lambda_suffixes) == sorted([IMAGE_UPLOAD_SUFFIX, VIDEO_UPLOAD_SUFFIX, COLLECTION_UPLOAD_SUFFIX])
        batch_rules = [r for r in s.resources("AWS::Events::Rule").values() if "EventPattern" in r["Properties"]
                       and r["Properties"]["EventPattern"].get("source") == ["aws.s3"]]
        assert len(batch_rules) == (1 if batch else 0)
        # The functions are told whether the GPU route exists, so the job API never names a dead route.
        api = s.template["Resources"][s.logical_id(s.stack.functions.api_function)]["Properties"]
        assert api["Environment"]["Variables"]["EMOTION_GPU_VIDEO"] == ("true" if batch else "false")


def test_sweep_function_runs_on_a_schedule_with_least_privilege(synth: Synth):
    functions = synth.stack.functions
    fn = synth.template["Resources"][synth.logical_id(functions.sweep_function)]["Properties"]
    assert fn["ImageConfig"]["Command"] == [SWEEP_HANDLER]
    assert fn["ReservedConcurrentExecutions"] == 1
    env = fn["Environment"]["Variables"]
    assert env["EMOTION_STORAGE"] == "s3" and int(env["EMOTION_JOB_STALE_S"]) > int(
        synth.template["Resources"][synth.logical_id(functions.trigger_function)]["Properties"]["Timeout"])
    rule = synth.template["Resources"][synth.logical_id(functions.sweep_rule)]["Properties"]
    assert rule["ScheduleExpression"] == f"rate({Config().sweep_interval_minutes} minutes)"
    assert {t["Arn"]["Fn::GetAtt"][0] for t in rule["Targets"]} == {synth.logical_id(functions.sweep_function)}
    actions = {a for st in _statements(synth, functions.sweep_role)
               for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
    assert not {a for a in actions if a.startswith("s3:Delete") or a == "s3:*"}
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket"} <= actions


def test_job_stale_time_must_exceed_the_trigger_timeout():
    import pytest

    with pytest.raises(ValueError, match="job_stale_s"):
        Config(job_stale_s=900, trigger_timeout_s=900)
