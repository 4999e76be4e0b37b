"""AWS Lambda entry point: API Gateway (REST v1 / HTTP API v2) events → Mangum → the FastAPI app.

``handler`` is a module-level :class:`~mangum.Mangum` (lifespan off). Each invocation is logged as structured
JSON by AWS Lambda Powertools with the Lambda request id and the API Gateway request id as correlation id;
the event, headers and bodies are never logged (they carry images and API keys). The engine is built during
the function's init phase so the first request does not pay for loading the models.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from mangum import Mangum

from emotion.api.app import app, warm_up

logger = Logger(service="emotion-api")
# The app's and the engine's stdlib loggers ("emotion.*") write through the same JSON formatter, so their
# lines carry the correlation id too.
copy_config_to_registered_loggers(source_logger=logger, include={"emotion", "emotion.api", "emotion.core.engine"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
def _invoke(event: dict[str, Any], context: Any, asgi: Mangum) -> dict[str, Any]:
    start = time.perf_counter()
    response: dict[str, Any] = Mangum.__call__(asgi, event, context)
    request = event.get("requestContext", {}) if isinstance(event, dict) else {}
    http = request.get("http", {}) if isinstance(request, dict) else {}
    logger.info(
        "request handled",
        method=http.get("method") or event.get("httpMethod"),
        path=http.get("path") or event.get("path"),
        status=response.get("statusCode"),
        duration_ms=round((time.perf_counter() - start) * 1000, 2),
        response_base64=response.get("isBase64Encoded", False),
    )
    return response


class LoggedMangum(Mangum):
    """Mangum with one structured log line per invocation (request ids, status, duration; never bodies)."""

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return _invoke(event, context, self)


warm_up()  # init phase: load and verify the models once per execution environment

handler = LoggedMangum(app, lifespan="off")
