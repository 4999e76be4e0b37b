"""The OpenAPI description as a client generator or a reader of /docs sees it: labels as enums, an example for
each response, every error documented, the job result typed, probabilities rounded to 4 decimals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from emotion.api.app import create_app
from emotion.core.results import AnalysisResult
from emotion.core.vocabulary import EMOTIONS


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict:
    return client.get("/openapi.json").json()


def test_emotion_labels_are_enums(spec: dict) -> None:
    face = spec["components"]["schemas"]["Face"]["properties"]
    assert face["dominant_emotion"]["enum"] == list(EMOTIONS)
    assert face["emotions"]["propertyNames"]["enum"] == list(EMOTIONS)
    labels = spec["components"]["schemas"]["ModelInfo"]["properties"]["labels"]["items"]
    assert labels["enum"] == list(EMOTIONS)


def test_faces_carry_pose_and_quality_and_the_example_fits_the_schema(spec: dict) -> None:
    schemas = spec["components"]["schemas"]
    assert {"pose", "quality"} <= set(schemas["Face"]["required"])
    assert set(schemas["Pose"]["properties"]) == {"yaw", "pitch", "roll"}
    assert set(schemas["Quality"]["properties"]) == {"brightness", "sharpness", "size", "reliable"}
    assert all(p.get("description") for p in schemas["Quality"]["properties"].values())
    example = spec["paths"]["/v1/analyze"]["post"]["responses"]["200"]["content"]["application/json"]["example"]
    assert AnalysisResult.model_validate(example).faces[0].quality.reliable


def test_every_json_response_has_an_example(spec: dict) -> None:
    schemas = spec["components"]["schemas"]
    missing = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                media = response.get("content", {}).get("application/json")
                if media is None:
                    continue  # images (annotate) and empty bodies
                if "example" in media or "examples" in media:
                    continue
                ref = media.get("schema", {}).get("$ref", "")
                schema = schemas.get(ref.rsplit("/", 1)[-1], {})
                # A schema whose fields carry examples gives Swagger UI a filled-in example too.
                if any("examples" in p or "$ref" in p for p in schema.get("properties", {}).values()):
                    continue
                missing.append(f"{method.upper()} {path} {status}")
    assert not missing, missing


def test_errors_are_documented(spec: dict) -> None:
    analyze = spec["paths"]["/v1/analyze"]["post"]["responses"]
    assert {"200", "400", "401", "413", "415", "422", "429", "503"} <= set(analyze)
    example = analyze["413"]["content"]["application/json"]["example"]
    assert example["error"]["code"] == "image_too_large"
    get_job = spec["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]
    assert get_job["404"]["content"]["application/json"]["example"]["error"]["code"] == "job_not_found"


def test_the_job_result_is_typed(spec: dict) -> None:
    result = spec["components"]["schemas"]["JobStatus"]["properties"]["result"]
    refs = {ref["$ref"].rsplit("/", 1)[-1] for ref in result["anyOf"][0]["oneOf"]}
    assert refs == {"ImageJobResult", "VideoJobResult", "CollectionJobResult"}
    assert "tracks" in spec["components"]["schemas"]["VideoJobResult"]["properties"]
    assert "dominant_emotions" in spec["components"]["schemas"]["CollectionJobResult"]["properties"]
    assert "faces_csv" in spec["components"]["schemas"]["CollectionFiles"]["properties"]


def test_photo_probabilities_have_four_decimals(client: TestClient, scenes: Path) -> None:
    body = client.post("/v1/analyze", files={"image": (scenes / "fp_multiface.jpg").read_bytes()}).json()
    values = [p for face in body["faces"] for p in face["emotions"].values()]
    assert len(body["faces"]) == 6 and all(len(face["emotions"]) == 8 for face in body["faces"])  # the 8-class default
    assert all(round(p, 4) == p for p in values)
    assert any(0 < p < 1 for p in values)


def test_models_report_the_upload_limits(client: TestClient) -> None:
    limits = client.get("/v1/models").json()["limits"]
    assert limits["max_body_bytes"] > 1_000_000 and limits["max_pixels"] > 1_000_000 and limits["max_side"] > 1000
