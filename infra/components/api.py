"""API Gateway REST API in front of the API function: API keys, usage plan, throttling, access logs."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.components.functions import log_group
from infra.config import PAGE_PATHS, Config

#: What API Gateway answers for a missing or wrong key: the service's 401 error JSON (its default is a bare
#: 403 ``{"message": "Forbidden"}``), so the page and clients see the same answer as from ``emotion serve``.
UNAUTHORIZED_BODY = '{"error": {"code": "unauthorized", "message": "missing or wrong x-api-key header"}}'

#: Request bodies API Gateway must pass through as binary (images, multipart uploads).
BINARY_MEDIA_TYPES = ["image/*", "multipart/form-data", "application/octet-stream"]


class Api(Construct):
    """REST API: every method needs an API key except GET on the configured public paths (/healthz) and, while
    ``public_page`` is on, on the web page, its static files and the API documentation (``PAGE_PATHS``)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, handler: lambda_.IFunction) -> None:
        super().__init__(scope, construct_id)
        self.access_log_group = log_group(self, "AccessLogs", config)
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name="emotion-api",
            description="Facial-emotion recognition API",
            binary_media_types=BINARY_MEDIA_TYPES,
            api_key_source_type=apigw.ApiKeySourceType.HEADER,
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name=config.stage_name,
                access_log_destination=apigw.LogGroupLogDestination(self.access_log_group),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
                throttling_rate_limit=config.stage_rate_limit,
                throttling_burst_limit=config.stage_burst_limit,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # never log request bodies: they are face images
            ),
        )
        integration = apigw.LambdaIntegration(handler, proxy=True)
        public_paths = {"/" + p.strip("/") for p in config.public_paths}
        if config.public_page:
            public_paths |= {"/" + p.strip("/") for p in PAGE_PATHS}

        root = self.rest_api.root
        # ANY on "/" with the key (add_proxy below would otherwise copy its ANY onto the root without one); a
        # public root adds GET without the key (API Gateway prefers the explicit method).
        root.add_method("ANY", integration, api_key_required=True)
        root.add_proxy(
            default_integration=integration,
            any_method=True,
            default_method_options=apigw.MethodOptions(api_key_required=True),
        )
        for path in sorted(public_paths):
            root.resource_for_path(path).add_method("GET", integration, api_key_required=False)

        self.rest_api.add_gateway_response(
            "InvalidApiKey",
            type=apigw.ResponseType.INVALID_API_KEY,
            status_code="401",
            templates={"application/json": UNAUTHORIZED_BODY},
        )
        self.api_key = self.rest_api.add_api_key("ApiKey", description="Default key of the emotion API")
        self.usage_plan = self.rest_api.add_usage_plan(
            "UsagePlan",
            name="emotion-default",
            throttle=apigw.ThrottleSettings(rate_limit=config.api_rate_limit, burst_limit=config.api_burst_limit),
            quota=apigw.QuotaSettings(limit=config.api_quota_per_day, period=apigw.Period.DAY),
        )
        self.usage_plan.add_api_key(self.api_key)
        self.usage_plan.add_api_stage(stage=self.rest_api.deployment_stage)

        Validations.of(self.rest_api).acknowledge(
            Acknowledgment(
                id="AwsSolutions-APIG2",
                reason="Requests are proxied to FastAPI, which validates every body and parameter against its "
                "OpenAPI schema and answers 4xx with a typed error.",
            ),
            Acknowledgment(
                id="AwsSolutions-APIG3",
                reason="WAF costs about $5/month plus per-rule fees even when idle; abuse is bounded by API keys, "
                "the usage plan quota and stage throttling. Attach a web ACL to the stage if needed.",
            ),
            Acknowledgment(
                id="AwsSolutions-APIG4",
                reason="Access is controlled by API keys and a usage plan (machine clients); only the public "
                "health check and, unless public_page is off, the web page, its static files and the API "
                "documentation are open (the page's API calls carry the key its user enters).",
            ),
            Acknowledgment(
                id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]",
                reason="The account-level role API Gateway uses to write the stage's access and error logs; "
                "AWS's managed policy is the documented one for this service role.",
            ),
            Acknowledgment(
                id="AwsSolutions-COG4",
                reason="No end-user identities: clients authenticate with API keys bound to a usage plan.",
            ),
        )

    @property
    def origin(self) -> str:
        """The https origin of the stage (for CORS on the buckets)."""
        api = self.rest_api
        return f"https://{api.rest_api_id}.execute-api.{api.stack.region}.{api.stack.url_suffix}"
