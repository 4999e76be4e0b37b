"""GPU video analysis: S3 EventBridge notifications -> rule -> AWS Batch job on a scale-to-zero GPU fleet."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, Size, Validations
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.components.functions import (
    GPU_DOCKERFILE,
    REPO_ROOT,
    acknowledge_prefix_grants,
    dead_letter_queue,
    grant_job_access,
    job_grants,
    log_group,
    service_environment,
)
from infra.components.storage import Storage
from infra.config import GPU_VIDEO_UPLOAD_SUFFIX, UPLOADS_PREFIX, VIDEO_JOB_MODULE, Config


def video_key_patterns() -> list[dict[str, str]]:
    """EventBridge matcher for the keys the job API names for the GPU route: uploads/<job id>/input.gpu-video."""
    return [{"wildcard": f"{UPLOADS_PREFIX}*{GPU_VIDEO_UPLOAD_SUFFIX}"}]


class GpuVideo(Construct):
    """Batch job queue on a managed EC2 GPU compute environment with min 0 vCPUs (nothing runs when idle)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, storage: Storage) -> None:
        super().__init__(scope, construct_id)

        # Public subnets only: no NAT gateway (about $32/month idle). Instances get a public IP for
        # ECR/S3 egress; the security group admits no inbound traffic.
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC)],
        )
        flow_logs = log_group(self, "FlowLogs", config)
        self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))
        security_group = ec2.SecurityGroup(
            self, "WorkerSecurityGroup", vpc=self.vpc, description="GPU video workers: egress only"
        )

        self.compute_environment = batch.ManagedEc2EcsComputeEnvironment(
            self,
            "GpuCompute",
            vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_groups=[security_group],
            instance_types=[ec2.InstanceType(t) for t in config.gpu_instance_types],
            use_optimal_instance_classes=False,
            minv_cpus=0,
            maxv_cpus=config.batch_max_vcpus,
            spot=config.gpu_spot,
            allocation_strategy=(
                batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED
                if config.gpu_spot
                else batch.AllocationStrategy.BEST_FIT_PROGRESSIVE
            ),
            # GPU-optimised ECS AMI (NVIDIA driver + container toolkit), chosen by Batch.
            images=[batch.EcsMachineImage(image_type=batch.EcsMachineImageType.ECS_AL2023_NVIDIA)],
        )
        self.job_queue = batch.JobQueue(
            self,
            "JobQueue",
            compute_environments=[
                batch.OrderedComputeEnvironment(compute_environment=self.compute_environment, order=1)
            ],
        )

        self.job_role = iam.Role(
            self,
            "JobRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="Runs the emotion GPU video job",
        )
        grant_job_access(self.job_role, storage)
        acknowledge_prefix_grants(self.job_role, job_grants(storage))
        self.log_group = log_group(self, "JobLogs", config)
        environment = service_environment(config, storage, "emotion-video-job")
        environment["EMOTION_PROVIDERS"] = "CUDAExecutionProvider,CPUExecutionProvider"
        self.container = batch.EcsEc2ContainerDefinition(
            self,
            "Container",
            image=ecs.ContainerImage.from_asset(
                str(REPO_ROOT), file=GPU_DOCKERFILE, platform=ecr_assets.Platform.LINUX_AMD64
            ),
            cpu=config.video_job_vcpus,
            memory=Size.mebibytes(config.video_job_memory_mib),
            gpu=1,
            command=["python", "-m", VIDEO_JOB_MODULE, "--bucket", "Ref::bucket", "--key", "Ref::key"],
            environment=environment,
            job_role=self.job_role,
            logging=ecs.LogDriver.aws_logs(stream_prefix="video", log_group=self.log_group),
            readonly_root_filesystem=False,
        )
        self.job_definition = batch.EcsJobDefinition(
            self,
            "JobDefinition",
            container=self.container,
            parameters={"bucket": storage.inputs.bucket_name, "key": ""},
            retry_attempts=config.video_job_retry_attempts,
            retry_strategies=[
                # Spot reclaim / host failure: retry. Application errors (exit code != 0): do not.
                batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.SPOT_INSTANCE_RECLAIMED),
                batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.CANNOT_PULL_CONTAINER),
                batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.NON_ZERO_EXIT_CODE),
            ],
            timeout=Duration.seconds(config.video_job_timeout_s),
            propagate_tags=True,
        )

        # EventBridge: video objects created under uploads/ submit one job with bucket + key parameters.
        self.dead_letter_queue = dead_letter_queue(
            self,
            "SubmitFailures",
            "This queue is itself the dead-letter queue of the EventBridge -> Batch target; its depth is alarmed.",
        )
        self.rule = events.Rule(
            self,
            "VideoUploaded",
            description="Submit a GPU video job for each upload the job API routed to the GPU (input.gpu-video)",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [storage.inputs.bucket_name]},
                    "object": {"key": video_key_patterns()},
                },
            ),
        )
        self.rule.add_target(
            targets.BatchJob(
                self.job_queue.job_queue_arn,
                self.job_queue,
                self.job_definition.job_definition_arn,
                self.job_definition,
                job_name="emotion-video",
                event=events.RuleTargetInput.from_object(
                    {
                        "Parameters": {
                            "bucket": events.EventField.from_path("$.detail.bucket.name"),
                            "key": events.EventField.from_path("$.detail.object.key"),
                        }
                    }
                ),
                attempts=config.video_job_retry_attempts,
                retry_attempts=3,
                max_event_age=Duration.hours(2),
                dead_letter_queue=self.dead_letter_queue,
            )
        )

        # Failed jobs are matched here; the alarm in Monitoring counts them.
        self.failed_jobs_rule = events.Rule(
            self,
            "VideoJobFailed",
            description="AWS Batch video jobs that ended FAILED",
            event_pattern=events.EventPattern(
                source=["aws.batch"],
                detail_type=["Batch Job State Change"],
                detail={"status": ["FAILED"], "jobQueue": [self.job_queue.job_queue_arn]},
            ),
        )

        Validations.of(self.compute_environment).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonEC2ContainerServiceforEC2Role]",
                reason="AWS Batch's documented instance role for ECS container instances (join the cluster, pull "
                "images, ship logs); the job's own data access is in the separate, prefix-scoped job role.",
            )
        )
        Validations.of(self.container.execution_role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="ecr:GetAuthorizationToken (pulling the job image) does not support resource-level "
                "permissions; the other execution-role statements name the repository and log group.",
            )
        )
