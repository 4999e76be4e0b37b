"""Typed results: the analysis JSON of DESIGN.md (API, CLI, S3 result files)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ImageSize(BaseModel):
    width: int
    height: int


class Box(BaseModel):
    """Integer pixels of the input image (after EXIF orientation)."""

    x: int
    y: int
    width: int
    height: int


class Landmarks(BaseModel):
    right_eye: tuple[float, float]
    left_eye: tuple[float, float]
    nose: tuple[float, float]
    mouth_right: tuple[float, float]
    mouth_left: tuple[float, float]


class Face(BaseModel):
    box: Box
    confidence: float = Field(description="detector score, 0..1")
    landmarks: Landmarks
    emotions: dict[str, float] = Field(description="softmax probabilities over the classifier's labels; sum to 1")
    dominant_emotion: str


class ModelsUsed(BaseModel):
    detector: str
    classifier: str


class AnalysisResult(BaseModel):
    image: ImageSize
    faces: list[Face]
    models: ModelsUsed
    timings_ms: dict[str, float] = Field(description="per stage: decode, detect, classify, total")


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body: ``{"error": {"code", "message"}}``."""

    error: ErrorBody
