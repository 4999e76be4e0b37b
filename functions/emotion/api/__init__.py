"""The HTTP adapter: FastAPI app (``emotion.api.app``), Lambda handler (``emotion.api.lambda_handler``),
local server (``emotion.api.server``) and the web page (``emotion/api/static``)."""
