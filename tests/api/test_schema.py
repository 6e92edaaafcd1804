"""The OpenAPI document: the seed's paths exactly, camelCase fields, error responses; Swagger UI."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from tests.factories import ModelVersionFactory

PREFIX = "/api/model-management"
SEED_OPERATIONS = [
    ("get", f"{PREFIX}/models"),
    ("get", f"{PREFIX}/models/{{name}}/versions"),
    ("get", f"{PREFIX}/models/{{name}}/metrics"),
    ("post", f"{PREFIX}/models/{{name}}/fine-tune"),
    ("get", f"{PREFIX}/models/{{name}}/fine-tune/status"),
    ("post", f"{PREFIX}/models/{{name}}/fine-tune/stop"),
    ("post", f"{PREFIX}/models/{{name}}/versions/{{version}}/activate"),
    ("get", f"{PREFIX}/models/{{name}}/drift"),
    ("get", f"{PREFIX}/models/{{name}}/comparison"),
]
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def schema(db) -> dict:
    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def request_schema(schema: dict, path: str, method: str) -> dict:
    content = schema["paths"][path][method]["requestBody"]["content"]
    return resolve(schema, content["application/json"]["schema"])


def response_schema(schema: dict, path: str, method: str, status: str) -> dict:
    content = schema["paths"][path][method]["responses"][status]["content"]
    return resolve(schema, content["application/json"]["schema"])


def test_schema_is_openapi_3_without_auth(schema):
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"]


@pytest.mark.parametrize(("method", "path"), SEED_OPERATIONS, ids=[f"{m} {p}" for m, p in SEED_OPERATIONS])
def test_seed_path_is_documented_exactly(schema, method, path):
    assert path in schema["paths"], sorted(schema["paths"])
    assert method in schema["paths"][path]


def test_no_model_management_path_has_a_trailing_slash(schema):
    paths = [p for p in schema["paths"] if p.startswith(PREFIX)]

    assert paths
    assert [p for p in paths if p.endswith("/")] == []
    assert len(paths) == len(set(paths))


def test_every_model_management_operation_documents_401_and_429(schema):
    missing = [
        (method, path, code)
        for path, method, operation in operations(schema)
        if path.startswith(PREFIX)
        for code in ("401", "429")
        if code not in operation["responses"]
    ]

    assert missing == []


@pytest.mark.parametrize(
    ("method", "path", "codes"),
    [
        ("post", f"{PREFIX}/models/{{name}}/fine-tune", {"202", "400", "403", "404", "409"}),
        ("post", f"{PREFIX}/models/{{name}}/fine-tune/stop", {"200", "403", "404", "409"}),
        ("post", f"{PREFIX}/models/{{name}}/versions/{{version}}/activate", {"200", "403", "404", "409"}),
        ("get", f"{PREFIX}/models/{{name}}/versions", {"200", "404"}),
        ("get", f"{PREFIX}/models/{{name}}/metrics", {"200", "404"}),
        ("get", f"{PREFIX}/models/{{name}}/drift", {"200", "404"}),
        ("get", f"{PREFIX}/models/{{name}}/comparison", {"200", "404"}),
        ("get", f"{PREFIX}/models/{{name}}/fine-tune/status", {"200", "404"}),
        ("post", f"{PREFIX}/datasets", {"201", "400", "403"}),
    ],
)
def test_operation_documents_its_error_responses(schema, method, path, codes):
    responses = schema["paths"][path][method]["responses"]

    assert codes <= set(responses), sorted(responses)


def test_error_responses_use_the_error_body(schema):
    for path, method, operation in operations(schema):
        if not path.startswith(PREFIX):
            continue
        for code in ("401", "429"):
            body = resolve(schema, operation["responses"][code]["content"]["application/json"]["schema"])
            assert {"detail", "code"} <= set(body["properties"]), (method, path, code)


def test_model_version_has_seed_fields(schema):
    version = resolve(schema, {"$ref": "#/components/schemas/ModelVersion"})

    assert {
        "id",
        "modelName",
        "version",
        "accuracy",
        "responseTime",
        "trainingDataSize",
        "trainingDate",
        "status",
        "performanceMetrics",
        "metadata",
    } <= set(version["properties"])


def test_versions_endpoint_returns_model_versions(schema):
    page = response_schema(schema, f"{PREFIX}/models/{{name}}/versions", "get", "200")

    item = resolve(schema, page["properties"]["results"]["items"])
    assert {"accuracy", "responseTime", "trainingDataSize", "trainingDate", "performanceMetrics", "metadata"} <= set(
        item["properties"]
    )


def test_fine_tune_request_has_seed_fields(schema):
    config = request_schema(schema, f"{PREFIX}/models/{{name}}/fine-tune", "post")

    assert {
        "modelName",
        "baseModel",
        "epochs",
        "learningRate",
        "batchSize",
        "trainingDataSize",
        "validationSplit",
        "earlyStoppingPatience",
        "hyperparameters",
    } <= set(config["properties"])
    assert not any("_" in name for name in config["properties"])  # camelCase on the wire
    assert config["properties"]["epochs"]["type"] == "integer"
    assert config["properties"]["learningRate"]["type"] == "number"
    assert config["properties"]["hyperparameters"]["type"] == "object"


def test_fine_tune_response_is_a_training_job(schema):
    job = response_schema(schema, f"{PREFIX}/models/{{name}}/fine-tune", "post", "202")

    assert {"id", "config", "startTime", "progress", "status"} <= set(job["properties"])


def test_dataset_upload_is_multipart_with_a_file(schema):
    content = schema["paths"][f"{PREFIX}/datasets"]["post"]["requestBody"]["content"]

    upload = resolve(schema, content["multipart/form-data"]["schema"])
    assert upload["properties"]["file"]["format"] == "binary"
    assert {"name", "symbol", "file"} <= set(upload["required"])


def test_bearer_auth_is_declared(schema):
    schemes = schema["components"]["securitySchemes"]

    assert any(s.get("type") == "http" and s.get("scheme") == "bearer" for s in schemes.values()), schemes


def test_swagger_ui_page(db):
    response = APIClient().get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "swagger-ui" in page.lower()
    assert "/api/schema/" in page


# --- Runtime: with and without a trailing slash --------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/model-management/models",
        "/api/model-management/models/llama3.1:8b",
        "/api/model-management/models/llama3.1:8b/versions",
        "/api/model-management/models/llama3.1:8b/versions/v1.0.0",
        "/api/model-management/models/llama3.1:8b/metrics",
        "/api/model-management/models/llama3.1:8b/drift",
        "/api/model-management/models/llama3.1:8b/comparison",
    ],
)
def test_paths_work_with_and_without_trailing_slash(ai_model, api, owner, path):
    ModelVersionFactory(model=ai_model, version="v1.0.0")
    client = api(owner)

    plain = client.get(path)
    slashed = client.get(f"{path}/")

    assert plain.status_code == 200, plain.content
    assert slashed.status_code == 200, slashed.content
    assert plain.json() == slashed.json()


def test_post_works_with_and_without_trailing_slash(ai_model, api, owner):
    client = api(owner)

    assert (
        client.post("/api/model-management/models/llama3.1:8b/fine-tune", {"epochs": 2}, format="json").status_code
        == 202
    )
    stop = client.post("/api/model-management/models/llama3.1:8b/fine-tune/stop/", format="json")
    assert stop.status_code == 200, stop.content
    assert client.get("/api/model-management/models/llama3.1:8b/fine-tune/status/").json()["status"] in (
        "stopped",
        "stopping",
    )
