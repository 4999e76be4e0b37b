"""The CPU container image and the Lambda functions built from it (API, S3 trigger, scheduled job sweep, and the
collection chunk worker behind its SQS queue)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Size, Stack, Validations
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.components.storage import Storage
from infra.config import (
    API_HANDLER,
    CHUNK_INPUTS_PATTERN,
    COLLECTION_UPLOAD_SUFFIX,
    COLLECTION_WORKER_HANDLER,
    IMAGE_MODEL_DIR,
    IMAGE_UPLOAD_SUFFIX,
    JOBS_PREFIX,
    RESULTS_PREFIX,
    S3_TRIGGER_HANDLER,
    SWEEP_HANDLER,
    UPLOADS_PREFIX,
    VIDEO_UPLOAD_SUFFIX,
    Config,
)

#: The Docker build context of both images is the repository root (see .dockerignore).
REPO_ROOT = Path(__file__).resolve().parents[2]
LAMBDA_DOCKERFILE = "layers/Dockerfile"
GPU_DOCKERFILE = "layers/gpu.Dockerfile"


def service_environment(config: Config, storage: Storage, service: str) -> dict[str, str]:
    """EMOTION_* settings shared by every function and job (names match functions/emotion/settings.py)."""
    env = {
        "EMOTION_STORAGE": "s3",
        "EMOTION_INPUTS_BUCKET": storage.inputs.bucket_name,
        "EMOTION_RESULTS_BUCKET": storage.results.bucket_name,
        "EMOTION_MODEL_DIR": IMAGE_MODEL_DIR,
        "EMOTION_MAX_UPLOAD_BYTES": str(config.max_upload_bytes),
        "EMOTION_UPLOAD_EXPIRES_S": str(config.upload_expires_s),
        "EMOTION_VIDEO_FPS": str(config.video_fps),
        # Job routing and the sweep: the API names upload keys by route (gpu-video only with the GPU path).
        "EMOTION_GPU_VIDEO": "true" if config.gpu_video else "false",
        "EMOTION_PUBLIC_PAGE": "true" if config.public_page else "false",
        "EMOTION_LAMBDA_VIDEO_MAX_BYTES": str(config.lambda_video_max_bytes),
        "EMOTION_JOB_STALE_S": str(config.job_stale_s),
        "POWERTOOLS_SERVICE_NAME": service,
        "LOG_LEVEL": config.log_level,
    }
    if config.classifier:  # else the image's own default (the package manifest's default_classifier)
        env["EMOTION_CLASSIFIER"] = config.classifier
    return env


def job_grants(storage: Storage) -> list[tuple[s3.IBucket, str]]:
    """The (bucket, prefix) pairs a worker touches."""
    return [(storage.inputs, UPLOADS_PREFIX), (storage.results, JOBS_PREFIX), (storage.results, RESULTS_PREFIX)]


def grant_job_access(grantee: iam.IGrantable, storage: Storage) -> None:
    """What a worker (S3 trigger, Batch video job) may touch: read uploads, write results and job records."""
    grant_prefixes(
        grantee,
        read=[(storage.inputs, UPLOADS_PREFIX), (storage.results, JOBS_PREFIX)],
        write=[(storage.results, RESULTS_PREFIX), (storage.results, JOBS_PREFIX)],
        list_results=storage.results,
    )


def grant_prefixes(
    grantee: iam.IGrantable,
    *,
    read: list[tuple[s3.IBucket, str]],
    write: list[tuple[s3.IBucket, str]],
    list_results: s3.IBucket | None = None,
) -> None:
    """Object-level S3 permissions limited to key prefixes (no bucket-wide wildcards, no deletes)."""
    for bucket, prefix in read:
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{prefix}*")])
        )
    for bucket, prefix in write:
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[bucket.arn_for_objects(f"{prefix}*")])
        )
    if list_results is not None:
        # Lets HeadObject/GetObject on a missing job record answer 404 instead of 403.
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[list_results.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{JOBS_PREFIX}*", f"{RESULTS_PREFIX}*"]}},
            )
        )



def dead_letter_queue(scope: Construct, construct_id: str, why_no_dlq_of_its_own: str) -> sqs.Queue:
    """An encrypted, TLS-only SQS queue that keeps failed events 14 days (its depth is alarmed elsewhere)."""
    queue = sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    Validations.of(queue).acknowledge(Acknowledgment(id="AwsSolutions-SQS3", reason=why_no_dlq_of_its_own))
    return queue

class Functions(Construct):
    """API function and S3-trigger function, one container image, each with its own least-privilege role."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, storage: Storage) -> None:
        super().__init__(scope, construct_id)
        arm = config.architecture == "arm64"
        self.architecture = lambda_.Architecture.ARM_64 if arm else lambda_.Architecture.X86_64
        platform = ecr_assets.Platform.LINUX_ARM64 if arm else ecr_assets.Platform.LINUX_AMD64

        def code(handler: str) -> lambda_.DockerImageCode:
            # Same directory + Dockerfile => one image asset; only the CMD (handler) differs.
            return lambda_.DockerImageCode.from_image_asset(
                str(REPO_ROOT), file=LAMBDA_DOCKERFILE, platform=platform, cmd=[handler]
            )

        # ---- Collection chunk queue (the planner in the trigger function sends, the chunk worker consumes) ---
        self.collection_dlq = dead_letter_queue(
            self,
            "CollectionChunkFailures",
            "This queue is itself the dead-letter queue of the collection chunk queue; a DLQ of a DLQ would only "
            "hide failures. Its depth is alarmed, and the sweep fails collections whose chunks never finish.",
        )
        self.collection_queue = sqs.Queue(
            self,
            "CollectionChunks",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            # AWS's guidance for SQS event sources: at least six times the function's timeout.
            visibility_timeout=Duration.seconds(6 * config.collection_worker_timeout_s),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=config.collection_max_receive_count, queue=self.collection_dlq
            ),
        )

        def environment(service: str) -> dict[str, str]:
            return {
                **service_environment(config, storage, service),
                "EMOTION_COLLECTION_QUEUE_URL": self.collection_queue.queue_url,
                "EMOTION_COLLECTION_CHUNK_IMAGES": str(config.collection_chunk_images),
            }

        # ---- API function -------------------------------------------------------------------------------
        self.api_role = self._role("ApiRole", "Runs the emotion API function")
        self.api_log_group = log_group(self, "ApiLogs", config)
        self.api_function = lambda_.DockerImageFunction(
            self,
            "ApiFunction",
            description="Emotion API (FastAPI behind Mangum): /v1/analyze, /v1/annotate, /v1/jobs, web page",
            code=code(API_HANDLER),
            architecture=self.architecture,
            memory_size=config.api_memory_mb,
            timeout=Duration.seconds(config.api_timeout_s),
            reserved_concurrent_executions=config.api_reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.api_log_group,
            role=self.api_role,
            environment=environment("emotion-api"),
        )
        self.api_log_group.grant_write(self.api_role)
        grant_prefixes(
            self.api_role,
            # Presigned POST uploads are signed with this role: it may only put under uploads/.
            read=[(storage.results, JOBS_PREFIX), (storage.results, RESULTS_PREFIX)],
            write=[(storage.inputs, UPLOADS_PREFIX), (storage.results, JOBS_PREFIX)],
            list_results=storage.results,
        )

        # ---- S3 trigger function ------------------------------------------------------------------------
        self.dead_letter_queue = dead_letter_queue(
            self,
            "TriggerFailures",
            "This queue is itself the on-failure destination (dead-letter queue) of the S3 trigger function; "
            "a DLQ of a DLQ would only hide failures. Its depth is alarmed.",
        )
        self.trigger_role = self._role("TriggerRole", "Runs the emotion S3-trigger function")
        self.trigger_log_group = log_group(self, "TriggerLogs", config)
        self.trigger_function = lambda_.DockerImageFunction(
            self,
            "TriggerFunction",
            description="Emotion S3 trigger: analyses objects created under uploads/ into results/ and jobs/",
            code=code(S3_TRIGGER_HANDLER),
            architecture=self.architecture,
            memory_size=config.trigger_memory_mb,
            timeout=Duration.seconds(config.trigger_timeout_s),
            ephemeral_storage_size=Size.mebibytes(config.trigger_ephemeral_storage_mb),
            reserved_concurrent_executions=config.trigger_reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.trigger_log_group,
            role=self.trigger_role,
            environment=environment("emotion-s3-trigger"),
            retry_attempts=config.trigger_retry_attempts,
            max_event_age=Duration.hours(6),
            on_failure=destinations.SqsDestination(self.dead_letter_queue),
        )
        self.trigger_log_group.grant_write(self.trigger_role)
        grant_job_access(self.trigger_role, storage)
        # The collection planner: writes each chunk's images next to the upload, and sends the chunk messages.
        self.trigger_role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:PutObject"], resources=[storage.inputs.arn_for_objects(CHUNK_INPUTS_PATTERN)]))
        self.collection_queue.grant_send_messages(self.trigger_role)

        destination = s3n.LambdaDestination(self.trigger_function)
        # The keys are the service's own (uploads/<id>/input.<route>): one exact suffix per route the
        # function takes. gpu-video uploads match neither and go to Batch (GpuVideo's EventBridge rule).
        for suffix in (IMAGE_UPLOAD_SUFFIX, VIDEO_UPLOAD_SUFFIX, COLLECTION_UPLOAD_SUFFIX):
            storage.inputs.add_event_notification(
                s3.EventType.OBJECT_CREATED, destination, s3.NotificationKeyFilter(prefix=UPLOADS_PREFIX, suffix=suffix)
            )

        # ---- Collection chunk worker --------------------------------------------------------------------
        # One chunk per invocation; SQS delivers a failed or dead chunk again, then dead-letters it. The event
        # source's maximum concurrency bounds how many run at once (and so the load on the account's Lambdas).
        self.collection_role = self._role("CollectionWorkerRole", "Runs the emotion collection chunk worker")
        self.collection_log_group = log_group(self, "CollectionWorkerLogs", config)
        self.collection_function = lambda_.DockerImageFunction(
            self,
            "CollectionWorkerFunction",
            description="Emotion collection chunk worker: analyses one chunk of a collection, merges the last",
            code=code(COLLECTION_WORKER_HANDLER),
            architecture=self.architecture,
            memory_size=config.collection_worker_memory_mb,
            timeout=Duration.seconds(config.collection_worker_timeout_s),
            reserved_concurrent_executions=config.collection_max_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.collection_log_group,
            role=self.collection_role,
            environment=environment("emotion-collection-worker"),
        )
        self.collection_log_group.grant_write(self.collection_role)
        self.collection_function.add_event_source(event_sources.SqsEventSource(
            self.collection_queue,
            batch_size=1,
            max_concurrency=config.collection_max_concurrency,
            report_batch_item_failures=True,
        ))
        self.collection_role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[storage.inputs.arn_for_objects(CHUNK_INPUTS_PATTERN)]))
        grant_prefixes(
            self.collection_role,
            # Chunk results, the merged files and the job record (read; written once merged) and heartbeat.
            read=[(storage.results, JOBS_PREFIX), (storage.results, RESULTS_PREFIX)],
            write=[(storage.results, JOBS_PREFIX), (storage.results, RESULTS_PREFIX)],
            list_results=storage.results,
        )

        # ---- Scheduled sweep ----------------------------------------------------------------------------
        # Jobs whose worker died (timeout, out of memory) or whose event was lost are redelivered by an
        # in-place copy of their upload (a new event, routed as the first) or failed once their attempts
        # are spent; uploads that never came are failed after the form expires.
        self.sweep_role = self._role("SweepRole", "Runs the emotion job sweep")
        self.sweep_log_group = log_group(self, "SweepLogs", config)
        self.sweep_function = lambda_.DockerImageFunction(
            self,
            "SweepFunction",
            description="Emotion job sweep: redelivers stale or lost jobs, fails spent or expired ones",
            code=code(SWEEP_HANDLER),
            architecture=self.architecture,
            memory_size=512,
            timeout=Duration.minutes(5),
            reserved_concurrent_executions=1,  # one sweep at a time
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.sweep_log_group,
            role=self.sweep_role,
            environment=environment("emotion-sweep"),
            retry_attempts=0,  # the next scheduled run is the retry
        )
        self.sweep_log_group.grant_write(self.sweep_role)
        grant_prefixes(
            self.sweep_role,
            # GetObject + PutObject on uploads/ is the in-place copy; job records are read and failed; a
            # collection whose chunks are all done is merged (chunk results read, the three files written).
            read=[(storage.inputs, UPLOADS_PREFIX), (storage.results, JOBS_PREFIX), (storage.results, RESULTS_PREFIX)],
            write=[(storage.inputs, UPLOADS_PREFIX), (storage.results, JOBS_PREFIX), (storage.results, RESULTS_PREFIX)],
            list_results=storage.results,
        )
        self.collection_queue.grant_send_messages(self.sweep_role)  # missing chunks are sent again
        self.sweep_rule = events.Rule(
            self,
            "SweepSchedule",
            description="Run the job sweep",
            schedule=events.Schedule.rate(Duration.minutes(config.sweep_interval_minutes)),
        )
        self.sweep_rule.add_target(targets.LambdaFunction(self.sweep_function, retry_attempts=0))

        for role in (self.api_role, self.trigger_role, self.sweep_role, self.collection_role):
            _acknowledge_xray(role)
        acknowledge_prefix_grants(
            self.api_role,
            [(storage.inputs, UPLOADS_PREFIX), (storage.results, JOBS_PREFIX), (storage.results, RESULTS_PREFIX)],
        )
        acknowledge_prefix_grants(self.trigger_role, job_grants(storage))
        acknowledge_prefix_grants(self.sweep_role, [(storage.inputs, UPLOADS_PREFIX), (storage.results, JOBS_PREFIX),
                                                    (storage.results, RESULTS_PREFIX)])
        acknowledge_prefix_grants(self.collection_role, [(storage.results, JOBS_PREFIX),
                                                         (storage.results, RESULTS_PREFIX)])
        for role in (self.trigger_role, self.collection_role):
            acknowledge_prefix_grants(role, [(storage.inputs, CHUNK_INPUTS_PATTERN.removesuffix("*"))])

    def _role(self, construct_id: str, description: str) -> iam.Role:
        return iam.Role(
            self,
            construct_id,
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=description,
        )


_RETENTION = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1827: "FIVE_YEARS",
    3653: "TEN_YEARS",
}


def log_group(scope: Construct, construct_id: str, config: Config) -> logs.LogGroup:
    """A log group with the configured retention, removed on teardown when data is."""
    return logs.LogGroup(
        scope,
        construct_id,
        retention=retention(config.log_retention_days),
        removal_policy=RemovalPolicy.DESTROY if config.destroy_data_on_teardown else RemovalPolicy.RETAIN,
    )


def retention(days: int) -> logs.RetentionDays:
    """CloudWatch Logs retention enum for a number of days (one of the values CloudWatch accepts)."""
    if days not in _RETENTION:
        raise ValueError(f"log_retention_days={days} is not one of {sorted(_RETENTION)}")
    return getattr(logs.RetentionDays, _RETENTION[days])


def acknowledge_prefix_grants(grantee: iam.Role, grants: list[tuple[s3.IBucket, str]]) -> None:
    """Acknowledge cdk-nag IAM5 for object ARNs that end in ``prefix/*``: the wildcard *is* the prefix scope."""
    stack = Stack.of(grantee)
    for bucket, prefix in grants:
        cfn_bucket = bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        logical_id = stack.resolve(stack.get_logical_id(cfn_bucket))
        Validations.of(grantee).acknowledge(
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/{prefix}*]",
                reason=f"Object access limited to the {prefix} key prefix that this role owns; job and "
                "upload ids are generated at run time, so the prefix is the narrowest static scope.",
            )
        )


def _acknowledge_xray(role: iam.Role) -> None:
    Validations.of(role).acknowledge(
        Acknowledgment(
            id="AwsSolutions-IAM5[Resource::*]",
            reason="Active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords do not support "
            "resource-level permissions.",
        )
    )
