"""Response models of the service routes that are not analysis results (those live in ``emotion.core.results``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ModelInfo(BaseModel):
    name: str
    version: str
    role: Literal["detector", "classifier", "identity"]
    licence: str
    labels: list[str] = Field(description="output labels (FER+ vocabulary) of a classifier; empty for a detector")
    input: dict[str, Any] = Field(description="input tensor: name, shape, dtype, layout, colour order")
    urls: list[str]
    default: bool = Field(description="used when a request names no classifier")
    available: bool = Field(description="the model file is present in the server's model directory")


class ModelsResponse(BaseModel):
    detector: str = Field(description="name of the detector in use")
    classifier: str = Field(description="name of the default classifier")
    models: list[ModelInfo]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    engine_loaded: bool = Field(description="the default engine has been built in this process")
