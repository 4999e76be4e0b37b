"""CDK Template assertions: every security, scaling and wiring property of the stack is pinned here.

Remove one of them from infra/ and a test in this file fails. The app is synthesized once per session
(tests/infra/conftest.py) with context values that differ from cdk.json, so each value is shown to flow
from context into the template.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from tests.infra.conftest import OVERRIDES, Synth, cdk_json_context

pytestmark = pytest.mark.infra


def _ref_ids(value: Any) -> set[str]:
    """Logical ids referenced (Ref / Fn::GetAtt) anywhere inside a template fragment."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            found.add(value["Fn::GetAtt"][0])
        for item in value.values():
            found |= _ref_ids(item)
    elif isinstance(value, list):
        for item in value:
            found |= _ref_ids(item)
    return found


def _bucket_ids(s: Synth) -> dict[str, str]:
    storage = s.stack.storage
    return {
        "inputs": s.logical_id(storage.inputs),
        "results": s.logical_id(storage.results),
        "logs": s.logical_id(storage.access_logs),
    }


def _function_ids(s: Synth) -> dict[str, str]:
    f = s.stack.functions
    return {"api": s.logical_id(f.api_function), "trigger": s.logical_id(f.trigger_function)}


# ---- storage ----------------------------------------------------------------------------------------------


def test_every_bucket_blocks_public_access_and_is_encrypted(synth: Synth) -> None:
    buckets = synth.resources("AWS::S3::Bucket")
    assert len(buckets) == 3
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, logical_id
        rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rules and rules[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")


def test_every_bucket_denies_non_tls_requests(synth: Synth) -> None:
    policies = {
        next(iter(_ref_ids(p["Properties"]["Bucket"]))): p["Properties"]["PolicyDocument"]["Statement"]
        for p in synth.resources("AWS::S3::BucketPolicy").values()
    }
    for name, logical_id in _bucket_ids(synth).items():
        statements = policies.get(logical_id, [])
        assert any(
            st["Effect"] == "Deny"
            and st["Action"] == "s3:*"
            and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for st in statements
        ), f"{name} bucket has no SSL-only deny statement"


def test_inputs_and_results_write_server_access_logs(synth: Synth) -> None:
    ids = _bucket_ids(synth)
    buckets = synth.template["Resources"]
    for name in ("inputs", "results"):
        logging = buckets[ids[name]]["Properties"].get("LoggingConfiguration")
        assert logging, f"{name} bucket has no server access logs"
        assert _ref_ids(logging["DestinationBucketName"]) == {ids["logs"]}


def test_cors_allows_exactly_the_api_origin_and_configured_origins(synth: Synth) -> None:
    ids = _bucket_ids(synth)
    api_id = synth.logical_id(synth.stack.api.rest_api)
    for name in ("inputs", "results"):
        rules = synth.template["Resources"][ids[name]]["Properties"]["CorsConfiguration"]["CorsRules"]
        for rule in rules:
            origins = rule["AllowedOrigins"]
            assert "*" not in origins
            literal = [o for o in origins if isinstance(o, str)]
            assert literal == OVERRIDES["cors_origins"]
            tokens = [o for o in origins if not isinstance(o, str)]
            assert len(tokens) == 1 and api_id in _ref_ids(tokens[0])  # https://<api>.execute-api...
    assert "CorsConfiguration" not in synth.template["Resources"][ids["logs"]]["Properties"]


def test_lifecycle_rules_expire_uploads_and_results_from_context(synth: Synth) -> None:
    ids = _bucket_ids(synth)
    res = synth.template["Resources"]

    def expirations(logical_id: str) -> dict[str, int]:
        rules = res[logical_id]["Properties"]["LifecycleConfiguration"]["Rules"]
        return {r["Prefix"]: r["ExpirationInDays"] for r in rules if "Prefix" in r and r["Status"] == "Enabled"}

    assert expirations(ids["inputs"]) == {"uploads/": OVERRIDES["uploads_expiration_days"]}
    assert expirations(ids["results"]) == {
        "results/": OVERRIDES["results_expiration_days"],
        "jobs/": OVERRIDES["results_expiration_days"],
    }


# ---- API --------------------------------------------------------------------------------------------------


def _resource_path(s: Synth, resource_id: Any) -> str:
    """The path of an API Gateway resource reference (the root is the RestApi's RootResourceId)."""
    if isinstance(resource_id, dict) and "Fn::GetAtt" in resource_id:
        assert resource_id["Fn::GetAtt"][1] == "RootResourceId"
        return "/"
    props = s.template["Resources"][resource_id["Ref"]]["Properties"]
    return _resource_path(s, props["ParentId"]).rstrip("/") + "/" + props["PathPart"]


def _methods_without_key(s: Synth) -> set[tuple[str, str]]:
    return {(m["Properties"]["HttpMethod"], _resource_path(s, m["Properties"]["ResourceId"]))
            for m in s.resources("AWS::ApiGateway::Method").values()
            if m["Properties"]["HttpMethod"] != "OPTIONS" and not m["Properties"].get("ApiKeyRequired", False)}


def test_api_key_required_on_every_method_except_health_and_the_page(synth: Synth, synth_cpu_only: Synth) -> None:
    # public_page on (the default): GET on the page, its static files and the API docs is open, nothing else.
    assert _methods_without_key(synth) == {
        ("GET", "/healthz"), ("GET", "/"), ("GET", "/static/{proxy+}"), ("GET", "/docs"),
        ("GET", "/docs/{proxy+}"), ("GET", "/openapi.json"),
    }
    methods = {(m["Properties"]["HttpMethod"], _resource_path(synth, m["Properties"]["ResourceId"]))
               for m in synth.resources("AWS::ApiGateway::Method").values()}
    assert {("ANY", "/{proxy+}"), ("ANY", "/")} <= methods  # both with the key (checked above)
    # public_page off: only the health check is open, and the function is told so.
    assert _methods_without_key(synth_cpu_only) == {("GET", "/healthz")}
    for s, public in ((synth, "true"), (synth_cpu_only, "false")):
        api = s.template["Resources"][s.logical_id(s.stack.functions.api_function)]["Properties"]
        assert api["Environment"]["Variables"]["EMOTION_PUBLIC_PAGE"] == public


def test_missing_or_wrong_key_answers_the_service_401_json(synth: Synth) -> None:
    _, response = synth.one("AWS::ApiGateway::GatewayResponse")
    props = response["Properties"]
    assert props["ResponseType"] == "INVALID_API_KEY" and props["StatusCode"] == "401"
    body = json.loads(props["ResponseTemplates"]["application/json"])
    assert body["error"]["code"] == "unauthorized" and body["error"]["message"]


def test_usage_plan_throttle_and_quota_from_context(synth: Synth) -> None:
    template = Template.from_json(synth.template)
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {
            "Throttle": {"RateLimit": OVERRIDES["api_rate_limit"], "BurstLimit": OVERRIDES["api_burst_limit"]},
            "Quota": {"Limit": OVERRIDES["api_quota_per_day"], "Period": "DAY"},
            "ApiStages": [Match.object_like({"ApiId": {"Ref": synth.logical_id(synth.stack.api.rest_api)}})],
        },
    )
    key_id, _ = synth.one("AWS::ApiGateway::ApiKey")
    plan_id, _ = synth.one("AWS::ApiGateway::UsagePlan")
    _, link = synth.one("AWS::ApiGateway::UsagePlanKey")
    assert link["Properties"]["KeyId"] == {"Ref": key_id}
    assert link["Properties"]["UsagePlanId"] == {"Ref": plan_id}


def test_binary_media_types(synth: Synth) -> None:
    _, api = synth.one("AWS::ApiGateway::RestApi")
    assert {"image/*", "multipart/form-data"} <= set(api["Properties"]["BinaryMediaTypes"])
    assert api["Properties"]["ApiKeySourceType"] == "HEADER"


def test_stage_access_logs_throttling_tracing(synth: Synth) -> None:
    _, stage = synth.one("AWS::ApiGateway::Stage")
    props = stage["Properties"]
    assert _ref_ids(props["AccessLogSetting"]["DestinationArn"]) == {synth.logical_id(synth.stack.api.access_log_group)}
    assert props["TracingEnabled"] is True
    (settings,) = props["MethodSettings"]
    assert settings["ResourcePath"] == "/*" and settings["HttpMethod"] == "*"
    assert settings["ThrottlingRateLimit"] == OVERRIDES["stage_rate_limit"]
    assert settings["ThrottlingBurstLimit"] == OVERRIDES["stage_burst_limit"]
    assert settings["DataTraceEnabled"] is False  # request bodies are face images: never logged


# ---- functions --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "handler", "memory", "timeout", "reserved"),
    [
        ("api", "emotion.api.lambda_handler.handler", "api_memory_mb", "api_timeout_s", "api_reserved_concurrency"),
        (
            "trigger",
            "emotion.jobs.s3_trigger.handler",
            "trigger_memory_mb",
            "trigger_timeout_s",
            "trigger_reserved_concurrency",
        ),
    ],
)
def test_container_functions_from_context(
    synth: Synth, name: str, handler: str, memory: str, timeout: str, reserved: str
) -> None:
    logical_id = _function_ids(synth)[name]
    props = synth.template["Resources"][logical_id]["Properties"]
    assert props["PackageType"] == "Image"
    assert props["ImageConfig"]["Command"] == [handler]
    assert props["MemorySize"] == OVERRIDES[memory]
    assert props["Timeout"] == OVERRIDES[timeout]
    assert props["ReservedConcurrentExecutions"] == OVERRIDES[reserved]
    assert props["Architectures"] == ["arm64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    log_group_id = next(iter(_ref_ids(props["LoggingConfig"]["LogGroup"])))
    log_group = synth.template["Resources"][log_group_id]
    assert log_group["Properties"]["RetentionInDays"] == OVERRIDES["log_retention_days"]
    env = props["Environment"]["Variables"]
    assert env["EMOTION_STORAGE"] == "s3"
    assert env["EMOTION_MODEL_DIR"] == "/opt/models"
    assert _ref_ids(env["EMOTION_INPUTS_BUCKET"]) == {_bucket_ids(synth)["inputs"]}
    assert _ref_ids(env["EMOTION_RESULTS_BUCKET"]) == {_bucket_ids(synth)["results"]}
    assert env["EMOTION_CLASSIFIER"] == OVERRIDES["classifier"]


def test_classifier_unset_leaves_the_images_default(synth_cpu_only: Synth) -> None:
    """No ``classifier`` in the context: no EMOTION_CLASSIFIER, so the image's manifest default applies."""
    functions = synth_cpu_only.resources("AWS::Lambda::Function")
    assert functions
    for logical_id, fn in functions.items():
        assert "EMOTION_CLASSIFIER" not in fn["Properties"].get("Environment", {}).get("Variables", {}), logical_id


def test_every_log_group_has_retention(synth: Synth) -> None:
    for logical_id, group in synth.resources("AWS::Logs::LogGroup").items():
        assert group["Properties"].get("RetentionInDays") == OVERRIDES["log_retention_days"], logical_id


def test_s3_trigger_has_encrypted_dlq_and_retry_limit(synth: Synth) -> None:
    fn_id = _function_ids(synth)["trigger"]
    configs = [
        c["Properties"]
        for c in synth.resources("AWS::Lambda::EventInvokeConfig").values()
        if _ref_ids(c["Properties"]["FunctionName"]) == {fn_id}
    ]
    assert len(configs) == 1
    config = configs[0]
    assert config["MaximumRetryAttempts"] == OVERRIDES["trigger_retry_attempts"]
    (queue_id,) = _ref_ids(config["DestinationConfig"]["OnFailure"]["Destination"])
    queue = synth.template["Resources"][queue_id]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"].get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in queue["Properties"]


def test_every_queue_is_encrypted_and_tls_only(synth: Synth) -> None:
    queues = synth.resources("AWS::SQS::Queue")
    assert len(queues) == 4  # trigger DLQ, EventBridge->Batch DLQ, collection chunk queue and its DLQ
    policies = synth.resources("AWS::SQS::QueuePolicy").values()
    for logical_id, queue in queues.items():
        assert queue["Properties"].get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in queue["Properties"]
        statements = [
            st
            for p in policies
            if logical_id in _ref_ids(p["Properties"]["Queues"])
            for st in p["Properties"]["PolicyDocument"]["Statement"]
        ]
        assert any(
            st["Effect"] == "Deny" and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for st in statements
        ), logical_id


def _lambda_notifications(s: Synth) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    _, notifications = s.one("Custom::S3BucketNotifications")
    assert _ref_ids(notifications["Properties"]["BucketName"]) == {_bucket_ids(s)["inputs"]}
    config = notifications["Properties"]["NotificationConfiguration"]
    return config, config.get("LambdaFunctionConfigurations", [])


def _filters(entry: dict[str, Any]) -> dict[str, str]:
    return {r["Name"]: r["Value"] for r in entry["Filter"]["Key"]["FilterRules"]}


def test_uploads_notify_trigger_by_route_when_gpu_video_on(synth: Synth) -> None:
    config, entries = _lambda_notifications(synth)
    fn_id = _function_ids(synth)["trigger"]
    assert entries
    suffixes = set()
    for entry in entries:
        assert entry["Events"] == ["s3:ObjectCreated:*"]
        assert _ref_ids(entry["LambdaFunctionArn"]) == {fn_id}
        filters = _filters(entry)
        assert filters["prefix"] == "uploads/"
        suffixes.add(filters["suffix"])
    # Keys are named by route by the job API (uploads/<id>/input.<route>), never by the client's file name.
    assert suffixes == {"/input.image", "/input.video", "/input.collection"}, \
        "gpu-video uploads must go to Batch, not the Lambda"
    assert "EventBridgeConfiguration" in config


def test_gpu_video_off_routes_images_and_videos_to_the_trigger(synth_cpu_only: Synth) -> None:
    config, entries = _lambda_notifications(synth_cpu_only)
    assert {_filters(e)["suffix"] for e in entries} == {"/input.image", "/input.video", "/input.collection"}
    assert {fn for e in entries for fn in _ref_ids(e["LambdaFunctionArn"])} == {
        _function_ids(synth_cpu_only)["trigger"]}
    assert "EventBridgeConfiguration" not in config
    types = {r["Type"] for r in synth_cpu_only.template["Resources"].values()}
    assert not {t for t in types if t.startswith("AWS::Batch::") or t.startswith("AWS::EC2::")}
    rules = synth_cpu_only.resources("AWS::Events::Rule").values()
    assert all("ScheduleExpression" in r["Properties"] for r in rules)  # only the sweep's schedule


# ---- GPU video on AWS Batch -------------------------------------------------------------------------------


def test_batch_compute_environment_scales_to_zero_on_gpu_instances(synth: Synth) -> None:
    _, env = synth.one("AWS::Batch::ComputeEnvironment")
    props = env["Properties"]
    assert props["Type"].upper() == "MANAGED"
    resources = props["ComputeResources"]
    assert resources["MinvCpus"] == 0
    assert resources["MaxvCpus"] == OVERRIDES["batch_max_vcpus"]
    assert resources["Type"] in ("EC2", "SPOT")
    assert resources["InstanceTypes"]
    assert all(t.split(".")[0] in ("g4dn", "g5") for t in resources["InstanceTypes"])
    assert [c["ImageType"] for c in resources["Ec2Configuration"]] == ["ECS_AL2023_NVIDIA"]
    _, queue = synth.one("AWS::Batch::JobQueue")
    assert _ref_ids(queue["Properties"]["ComputeEnvironmentOrder"]) == {
        synth.logical_id(synth.stack.video.compute_environment)
    }


def test_batch_job_definition_gpu_retry_timeout(synth: Synth) -> None:
    _, job = synth.one("AWS::Batch::JobDefinition")
    props = job["Properties"]
    container = props["ContainerProperties"]
    requirements = {r["Type"]: r["Value"] for r in container["ResourceRequirements"]}
    assert requirements["GPU"] == "1"
    assert container["Command"] == [
        "python",
        "-m",
        "emotion.jobs.video_job",
        "--bucket",
        "Ref::bucket",
        "--key",
        "Ref::key",
    ]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["EMOTION_PROVIDERS"].startswith("CUDAExecutionProvider")
    assert props["RetryStrategy"]["Attempts"] == OVERRIDES["video_job_retry_attempts"]
    assert props["Timeout"]["AttemptDurationSeconds"] == OVERRIDES["video_job_timeout_s"]


def test_video_uploads_rule_submits_batch_job_with_bucket_and_key(synth: Synth) -> None:
    video = synth.stack.video
    rule = synth.template["Resources"][synth.logical_id(video.rule)]["Properties"]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert _ref_ids(pattern["detail"]["bucket"]["name"]) == {_bucket_ids(synth)["inputs"]}
    keys = [k["wildcard"] for k in pattern["detail"]["object"]["key"]]
    assert keys == ["uploads/*/input.gpu-video"]  # the key the job API names for the GPU route
    (target,) = rule["Targets"]
    assert _ref_ids(target["Arn"]) == {synth.logical_id(video.job_queue)}
    assert _ref_ids(target["BatchParameters"]["JobDefinition"]) == {synth.logical_id(video.job_definition)}
    transformer = target["InputTransformer"]
    paths = set(transformer["InputPathsMap"].values())
    assert paths == {"$.detail.bucket.name", "$.detail.object.key"}
    template = json.loads(
        transformer["InputTemplate"].replace("<detail-bucket-name>", '"B"').replace("<detail-object-key>", '"K"')
    )
    assert template == {"Parameters": {"bucket": "B", "key": "K"}}
    assert _ref_ids(target["DeadLetterConfig"]["Arn"]) == {synth.logical_id(video.dead_letter_queue)}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1


# ---- operations -------------------------------------------------------------------------------------------


def test_alarms_notify_the_topic(synth: Synth) -> None:
    topic_id = synth.logical_id(synth.stack.monitoring.topic)
    alarms = list(synth.resources("AWS::CloudWatch::Alarm").values())
    for alarm in alarms:
        assert _ref_ids(alarm["Properties"]["AlarmActions"]) == {topic_id}

    def watched(metric: str) -> list[set[str]]:
        return [
            _ref_ids(a["Properties"].get("Dimensions", []))
            for a in alarms
            if a["Properties"].get("MetricName") == metric
        ]

    fns = _function_ids(synth)
    assert {fns["api"]} in watched("Errors") and {fns["trigger"]} in watched("Errors")
    assert {fns["api"]} in watched("Throttles") and {fns["trigger"]} in watched("Throttles")
    dlqs = watched("ApproximateNumberOfMessagesVisible")
    assert {synth.logical_id(synth.stack.functions.dead_letter_queue)} in dlqs
    assert {synth.logical_id(synth.stack.video.dead_letter_queue)} in dlqs
    failed_rule = synth.logical_id(synth.stack.video.failed_jobs_rule)
    assert {failed_rule} in watched("TriggeredRules")
    rule = synth.template["Resources"][failed_rule]["Properties"]
    assert rule["EventPattern"]["detail"]["status"] == ["FAILED"]
    assert [_ref_ids(t["Arn"]) for t in rule["Targets"]] == [{topic_id}]
    _, subscription = synth.one("AWS::SNS::Subscription")
    assert subscription["Properties"]["Endpoint"] == OVERRIDES["alarm_email"]


def test_outputs(synth: Synth) -> None:
    outputs = synth.template["Outputs"]
    assert {"ApiUrl", "ApiKeyId", "InputsBucketName", "ResultsBucketName"} <= set(outputs)
    assert _ref_ids(outputs["ApiKeyId"]["Value"]) == {synth.one("AWS::ApiGateway::ApiKey")[0]}
    assert _ref_ids(outputs["InputsBucketName"]["Value"]) == {_bucket_ids(synth)["inputs"]}
    assert _ref_ids(outputs["ResultsBucketName"]["Value"]) == {_bucket_ids(synth)["results"]}


# ---- least privilege --------------------------------------------------------------------------------------


def _s3_grants(s: Synth, role: Any) -> set[tuple[str, str, str]]:
    """(action, bucket, prefix) for every S3 statement of a role; fails on anything not prefix-scoped."""
    role_id = s.logical_id(role)
    buckets = {v: k for k, v in _bucket_ids(s).items()}
    grants: set[tuple[str, str, str]] = set()
    for policy in s.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} not in policy["Properties"]["Roles"]:
            continue
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            s3_actions = [a for a in actions if a.startswith("s3:")]
            if not s3_actions:
                continue
            assert st["Effect"] == "Allow"
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            for action in s3_actions:
                assert "*" not in action, f"wildcard S3 action {action}"
                for resource in resources:
                    assert resource != "*"
                    if action == "s3:ListBucket":
                        (bucket_id,) = _ref_ids(resource)
                        prefixes = st["Condition"]["StringLike"]["s3:prefix"]
                        grants |= {(action, buckets[bucket_id], p) for p in prefixes}
                        continue
                    parts = resource["Fn::Join"][1]
                    (bucket_id,) = _ref_ids(parts[0])
                    grants.add((action, buckets[bucket_id], parts[1]))
    return grants


def test_api_role_is_scoped_to_its_prefixes(synth: Synth) -> None:
    assert _s3_grants(synth, synth.stack.functions.api_role) == {
        ("s3:PutObject", "inputs", "/uploads/*"),  # presigned POST uploads
        ("s3:GetObject", "results", "/jobs/*"),
        ("s3:PutObject", "results", "/jobs/*"),
        ("s3:GetObject", "results", "/results/*"),
        ("s3:ListBucket", "results", "jobs/*"),
        ("s3:ListBucket", "results", "results/*"),
    }


@pytest.mark.parametrize("which", ["trigger", "batch"])
def test_worker_roles_are_scoped_to_their_prefixes(synth: Synth, which: str) -> None:
    role = synth.stack.functions.trigger_role if which == "trigger" else synth.stack.video.job_role
    # The trigger function also plans collections: it writes their chunks next to the upload.
    planner = {("s3:PutObject", "inputs", "/uploads/*/chunks/*")} if which == "trigger" else set()
    assert _s3_grants(synth, role) == {
        ("s3:GetObject", "inputs", "/uploads/*"),
        ("s3:GetObject", "results", "/jobs/*"),
        ("s3:PutObject", "results", "/jobs/*"),
        ("s3:PutObject", "results", "/results/*"),
        ("s3:ListBucket", "results", "jobs/*"),
        ("s3:ListBucket", "results", "results/*"),
    } | planner


def test_service_roles_have_no_managed_policies(synth: Synth) -> None:
    res = synth.template["Resources"]
    for role in (synth.stack.functions.api_role, synth.stack.functions.trigger_role, synth.stack.video.job_role):
        assert not res[synth.logical_id(role)]["Properties"].get("ManagedPolicyArns")


# ---- configuration ----------------------------------------------------------------------------------------


def test_cdk_json_lists_every_setting_with_its_default() -> None:
    import dataclasses

    from infra.config import Config

    context = {k: v for k, v in cdk_json_context().items() if not k.startswith("@")}
    defaults = Config()
    assert set(context) == {f.name for f in dataclasses.fields(Config)}
    assert Config.from_mapping(context) == defaults


def test_context_strings_from_the_command_line_are_parsed() -> None:
    from infra.config import Config

    config = Config.from_mapping(
        {
            "gpu_video": "false",
            "api_memory_mb": "1024",
            "api_reserved_concurrency": "none",
            "cors_origins": "https://a.example,https://b.example",
            "gpu_instance_types": '["g5.2xlarge"]',
        }
    )
    assert config.gpu_video is False and config.api_memory_mb == 1024
    assert config.api_reserved_concurrency is None
    assert config.cors_origins == ["https://a.example", "https://b.example"]
    assert config.gpu_instance_types == ["g5.2xlarge"]
    with pytest.raises(ValueError):
        Config.from_mapping({"api_reserved_concurrency": "0"})
    with pytest.raises(ValueError):
        Config.from_mapping({"no_such_setting": "1"})
