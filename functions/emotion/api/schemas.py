"""Response models of the service routes that are not analysis results (those live in ``emotion.core.results``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from emotion.core.results import EmotionLabel


class ModelInfo(BaseModel):
    name: str = Field(examples=["mobilefacenet"])
    version: str = Field(examples=["opencv-zoo-fer-mobilefacenet-2022july-int8"])
    role: Literal["detector", "classifier", "identity"]
    licence: str = Field(examples=["Apache-2.0 (opencv_zoo models/facial_expression_recognition)"])
    labels: list[EmotionLabel] = Field(
        description="output labels (FER+ vocabulary) of a classifier; empty for a detector",
        examples=[["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]],
    )
    input: dict[str, Any] = Field(
        description="input tensor: name, shape, dtype, layout, colour order",
        examples=[{"name": "data", "shape": ["N", "3", "112", "112"], "dtype": "float32", "layout": "NCHW",
                   "color": "RGB"}],
    )
    urls: list[str] = Field(examples=[["https://github.com/opencv/opencv_zoo/raw/main/models/"
                                       "facial_expression_recognition/"
                                       "facial_expression_recognition_mobilefacenet_2022july_int8.onnx"]])
    precision: Literal["int8", "fp32"] = Field(description="the arithmetic of this file's weights and products")
    form_of: str | None = Field(None, description="the classifier this file is another form of (fp32 form)")
    default: bool = Field(description="used when a request names no classifier")
    available: bool = Field(description="the model file is present in the server's model directory")


class Limits(BaseModel):
    """What one image may be, so a client (the web page) can check or shrink a photo before uploading it."""

    max_body_bytes: int = Field(description="largest request body", examples=[6_000_000])
    max_pixels: int = Field(description="largest image, width x height", examples=[40_000_000])
    max_side: int = Field(description="longest image side, px", examples=[20_000])


class CpuInfo(BaseModel):
    """The CPU this process runs on: int8 speed depends on these instruction sets."""

    model: str = Field(examples=["Intel(R) Xeon(R) Platinum 8488C"])
    machine: str = Field(examples=["x86_64"])
    cores: int = Field(description="cores this process may use", examples=[2])
    instruction_sets: list[str] = Field(description="the int8-deciding ones present (avx2, avx512f, avx512bw, "
                                        "avx512_vnni, avx_vnni, amx; neon, dotprod on ARM)",
                                        examples=[["avx2", "avx512f", "avx512bw", "avx512_vnni"]])


class ModelsResponse(BaseModel):
    detector: str = Field(description="name of the detector in use", examples=["yunet"])
    classifier: str = Field(description="name of the default classifier", examples=["mobilefacenet8"])
    classifier_precision: Literal["int8", "fp32"] = Field(
        description="the form of the default classifier that runs on this CPU (EMOTION_CLASSIFIER_PRECISION)")
    cpu: CpuInfo
    models: list[ModelInfo]
    limits: Limits


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str = Field(examples=["0.1.0"])
    engine_loaded: bool = Field(description="the default engine has been built in this process")
    classifier: str = Field(description="version of the default classifier's form that runs",
                            examples=["mobilefacenet8-ferplus-sfew-v4.2-int8"])
    classifier_precision: Literal["int8", "fp32"] = Field(description="int8 or fp32 (EMOTION_CLASSIFIER_PRECISION)")
    cpu: CpuInfo
