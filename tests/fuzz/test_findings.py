"""What the schemathesis run found, pinned as plain tests (each failed before its fix)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from models_mgmt.choices import Role, VersionStatus
from tests.api.test_permission_matrix import serving_artifact
from tests.factories import AIModelFactory, ModelVersionFactory, UserFactory, grant

BASE = "/api/model-management"


@pytest.fixture
def maintainer(db):
    return UserFactory(role=Role.MAINTAINER)


@pytest.mark.parametrize(
    "path",
    [f"{BASE}/models/%C2%84", f"{BASE}/models/%C2%84/versions", f"{BASE}/jobs/x", f"{BASE}/datasets/%C2%84", "/api/x"],
)
def test_an_api_url_that_matches_no_route_answers_the_json_error_body(maintainer, api, path):
    """Was Django's HTML 404 page: a name outside the route's characters never reached DRF."""
    response = api(maintainer).get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


def test_pages_outside_the_api_keep_the_html_404(client, db):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("path", ["models", "jobs", "datasets", "audit-events"])
def test_a_page_out_of_range_is_a_documented_404(maintainer, api, path):
    """Lists answer 404 for page=0 or past the end; the schema now documents it."""
    response = api(maintainer).get(f"{BASE}/{path}", {"page": 0})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    schema = APIClient().get("/api/schema/?format=json").json()
    assert "404" in schema["paths"][f"{BASE}/{path}"]["get"]["responses"]


def test_options_on_dataset_bars_is_not_a_500(maintainer, api):
    """DatasetBarsView had no serializer_class, so DRF's OPTIONS metadata crashed."""
    AIModelFactory()  # creates the "sample" dataset
    response = api(maintainer).options(f"{BASE}/datasets/sample/bars")
    assert response.status_code == 200
    assert "bars" in response.json()["actions"]["POST"]


def test_a_model_without_a_default_dataset_matches_its_schema(maintainer, api):
    """defaultDataset is null for such a model; the schema said a non-null string."""
    response = api(maintainer).post(f"{BASE}/models", {"name": "no-dataset"}, format="json")
    assert response.status_code == 201
    assert response.json()["defaultDataset"] is None
    schema = APIClient().get("/api/schema/?format=json").json()
    assert schema["components"]["schemas"]["AIModelDetail"]["properties"]["defaultDataset"]["nullable"] is True


def test_comparison_with_only_an_end_date_is_not_a_500(maintainer, api, tmp_path):
    """`end` without `start` reached an assert in the held-out comparison (500)."""
    model = AIModelFactory(name="cmp", owner=maintainer)
    grant(maintainer, model, Role.MAINTAINER)
    ModelVersionFactory(
        model=model, version="v1.0.0", status=VersionStatus.ACTIVE, artifact_path=serving_artifact(tmp_path)
    )
    for end in ("1535-02-19", "2020-06-01"):
        response = api(maintainer).get(f"{BASE}/models/cmp/comparison", {"end": end})
        assert response.status_code == 200, response.content
        assert response.json()["heldOut"]["window"]["chosenBy"] == "request"


def test_a_body_in_a_media_type_the_operation_does_not_parse_is_a_documented_415(maintainer, api):
    """The schema listed no 415, yet a text/plain (or broken multipart) body gets one."""
    response = api(maintainer).generic("POST", f"{BASE}/models", "name=x", content_type="text/plain")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    schema = APIClient().get("/api/schema/?format=json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                assert "415" in operation["responses"], (method, path)


def test_health_documents_the_401_of_a_bad_token(db):
    response = APIClient(HTTP_AUTHORIZATION="Bearer garbage").get("/api/health/")
    assert response.status_code == 401
    schema = APIClient().get("/api/schema/?format=json").json()
    assert "401" in schema["paths"]["/api/health/"]["get"]["responses"]


def test_a_body_over_the_upload_limit_answers_the_json_error_body(maintainer, api, settings):
    """Django refuses it before any view runs; its handler400 answered an HTML page under /api/."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    AIModelFactory()  # creates the "sample" dataset
    response = api(maintainer).post(f"{BASE}/datasets/sample/bars", {"bars": [{"x": "y" * 2000}]}, format="json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "The request body is too large.", "code": "request_too_large"}


def test_too_many_form_fields_answer_the_json_error_body(maintainer, api, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    body = "&".join(f"f{i}=1" for i in range(20))
    response = api(maintainer).generic(
        "POST", "/api/auth/token/", body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "too_many_fields"


def test_a_host_not_allowed_answers_the_json_error_body_under_the_api(maintainer, api):
    response = api(maintainer).get(f"{BASE}/models", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Bad request.", "code": "bad_request"}
