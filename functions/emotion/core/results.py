"""Typed results: the analysis JSON of DESIGN.md (API, CLI, S3 result files)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

# The emotion vocabulary (emotion.core.vocabulary.EMOTIONS) as a type, so the OpenAPI schema lists the labels.
EmotionLabel = Literal["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
PROBABILITY_DECIMALS = 4  # every probability in every result (photo and video) is rounded to this


def round_probabilities(emotions: dict[EmotionLabel, float]) -> dict[EmotionLabel, float]:
    return {label: round(float(p), PROBABILITY_DECIMALS) for label, p in emotions.items()}


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


class Pose(BaseModel):
    """Head pose in degrees from the 5 landmarks, as a viewer of the image sees the face. Roll is exact for the
    landmarks; yaw and pitch assume an average face and are approximate (docs/benchmarks.md)."""

    yaw: float = Field(description="turned towards the image's right > 0, left < 0; 0 frontal")
    pitch: float = Field(description="tilted up (chin up) > 0, down < 0")
    roll: float = Field(description="turned counter-clockwise in the image > 0, clockwise < 0; exact from the eye line")


class Quality(BaseModel):
    brightness: float = Field(description="mean grey level of the face aligned to 112x112, 0 (black) to 255")
    sharpness: float = Field(description="variance of the Laplacian of the aligned face (112x112): low when the face "
                             "is blurred or smaller than that in the image")
    size: int = Field(description="the shorter side of the face box, in input pixels")
    reliable: bool = Field(description="bright, sharp and large enough for the expression to be read as accurately "
                           "as on typical faces (thresholds in docs/benchmarks.md); an unreliable face's emotions "
                           "are less often right")


class Face(BaseModel):
    box: Box
    confidence: float = Field(description="detector score, 0..1")
    landmarks: Landmarks
    pose: Pose
    quality: Quality
    emotions: dict[EmotionLabel, float] = Field(
        description="softmax probabilities over the classifier's labels, most likely first, 4 decimals; sum to 1 "
        "(within rounding). A 7-class classifier has no `contempt`."
    )
    dominant_emotion: EmotionLabel = Field(description="the emotion with the highest probability")

    @field_validator("emotions")
    @classmethod
    def _round(cls, value: dict[EmotionLabel, float]) -> dict[EmotionLabel, float]:
        return round_probabilities(value)


class ModelsUsed(BaseModel):
    detector: str
    classifier: str
    classifier_precision: Literal["int8", "fp32"] = Field(
        description="the form of the classifier that ran: int8 (the same integers on every CPU) or fp32 (the same "
        "weights, float activations); EMOTION_CLASSIFIER_PRECISION chooses")


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
