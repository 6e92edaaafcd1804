"""llm-lora through the API: base model registration, the family at registration, its config,
artifact download (every family), predict without Ollama. Permission matrix: 401 / 403 / 404."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from models_mgmt.choices import Role, VersionStatus
from models_mgmt.engine.llm.artifact import combined_checksum, directory_files
from models_mgmt.models import AuditEvent, BaseModel, TrainingJob
from tests.factories import AIModelFactory, ModelVersionFactory, UserFactory, grant

API = "/api/model-management"


@pytest.fixture
def maintainer(db):
    return UserFactory(role=Role.MAINTAINER)


@pytest.fixture
def base(api, maintainer, tiny_base_dir):
    body = {"name": "tiny-llama", "path": str(tiny_base_dir), "ollamaTag": "tiny-llama:latest"}
    response = api(maintainer).post(f"{API}/base-models", body, format="json")
    assert response.status_code == 201, response.data
    return BaseModel.objects.get(name="tiny-llama")


@pytest.fixture
def llm_model(api, maintainer, base):
    body = {"name": "llama3.1:8b", "family": "llm-lora", "baseModel": base.name, "defaultDataset": None}
    response = api(maintainer).post(f"{API}/models", body, format="json")
    assert response.status_code == 201, response.data
    from models_mgmt.models import AIModel

    return AIModel.objects.get(name="llama3.1:8b")


def artifact_dir(root: Path) -> Path:
    """A version directory with a manifest, as both families write them."""
    (root / "adapter").mkdir(parents=True)
    (root / "adapter" / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    (root / "Modelfile").write_text("FROM tiny-llama:latest\nADAPTER ./adapter\n")
    files = directory_files(root)
    (root / "manifest.json").write_text(json.dumps({"files": files, "checksum": combined_checksum(files)}))
    return root


# --- Base models ---------------------------------------------------------------------------------


def test_registering_a_base_records_its_checksums_and_is_audited(base, maintainer):
    assert base.architecture == "LlamaForCausalLM" and base.ollama_tag == "tiny-llama:latest"
    assert len(base.files["model.safetensors"]) == 64 and base.eos_token == "</s>"
    event = AuditEvent.objects.get(action="base_model.registered")
    assert event.actor == maintainer and event.after["files"] == base.files


@pytest.mark.parametrize("role", [Role.VIEWER, Role.TRAINER, Role.MAINTAINER])
def test_every_role_sees_the_registered_bases(api, base, role):
    user = UserFactory(role=role)
    listed = api(user).get(f"{API}/base-models")
    assert [b["name"] for b in listed.data["results"]] == ["tiny-llama"]
    detail = api(user).get(f"{API}/base-models/tiny-llama")
    assert detail.status_code == 200 and detail.data["ollamaTag"] == "tiny-llama:latest"


def test_base_model_permission_matrix(api, base, tiny_base_dir):
    body = {"name": "other", "path": str(tiny_base_dir), "ollamaTag": "other:1b"}
    for method, path in (("get", f"{API}/base-models"), ("get", f"{API}/base-models/tiny-llama"),
                         ("post", f"{API}/base-models")):  # fmt: skip
        assert getattr(APIClient(), method)(path, body, format="json").status_code == 401
    nobody = UserFactory()  # signed in, no role
    assert api(nobody).get(f"{API}/base-models").data["results"] == []
    assert api(nobody).get(f"{API}/base-models/tiny-llama").status_code == 404
    for role in (Role.VIEWER, Role.TRAINER):
        response = api(UserFactory(role=role)).post(f"{API}/base-models", body, format="json")
        assert response.status_code == 403 and response.data["code"] == "permission_denied"
    assert api(UserFactory(role=Role.VIEWER)).get(f"{API}/base-models/missing").status_code == 404
    assert not BaseModel.objects.filter(name="other").exists()


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"path": "/no/such/dir"}, "path", "is not a directory"),
        ({"path": "relative/dir"}, "path", "absolute path"),
        ({"ollamaTag": "Llama 3"}, "ollamaTag", "Ollama model tag"),
        ({"name": "tiny-llama"}, "name", "already exists"),
        ({"name": "bad name!"}, "name", "letters, digits"),
        ({"checksum": "x"}, "checksum", "unknown or read-only"),
    ],
)
def test_bad_base_registrations_name_the_field(api, maintainer, base, tiny_base_dir, change, field, reason):
    body = {"name": "second", "path": str(tiny_base_dir), "ollamaTag": "second:7b", **change}
    response = api(maintainer).post(f"{API}/base-models", body, format="json")
    assert response.status_code == 400, response.data
    assert response.data["code"] == "invalid" and response.data["detail"]
    assert reason in " ".join(map(str, response.data["fields"][field]))


def test_a_directory_without_weights_is_refused_with_every_problem(api, maintainer, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    body = {"name": "empty", "path": str(tmp_path), "ollamaTag": "empty:1b"}
    response = api(maintainer).post(f"{API}/base-models", body, format="json")
    assert response.status_code == 400
    problems = response.data["fields"]["path"]
    assert any("no tokenizer" in p for p in problems) and any("safetensors" in p for p in problems)


# --- The family at registration and in every response --------------------------------------------


def test_the_family_is_chosen_at_registration_and_shown(api, maintainer, llm_model):
    assert llm_model.family == "llm-lora" and llm_model.base_model == "tiny-llama"
    detail = api(maintainer).get(f"{API}/models/llama3.1:8b")
    assert detail.data["family"] == "llm-lora" and detail.data["baseModel"] == "tiny-llama"
    listed = api(maintainer).get(f"{API}/models").data["results"]
    assert [(m["name"], m["family"]) for m in listed] == [("llama3.1:8b", "llm-lora")]


@pytest.mark.parametrize(("base_model", "reason"), [("", "name a registered base model"), ("ghost", "no registered")])
def test_an_llm_model_needs_a_registered_base(api, maintainer, base, base_model, reason):
    body = {"name": "llm-two", "family": "llm-lora", "baseModel": base_model}
    response = api(maintainer).post(f"{API}/models", body, format="json")
    assert response.status_code == 400 and reason in response.data["fields"]["baseModel"][0]


def test_an_llm_model_cannot_point_at_an_unknown_base_later(api, maintainer, llm_model):
    response = api(maintainer).patch(f"{API}/models/llama3.1:8b", {"baseModel": "ghost"}, format="json")
    assert response.status_code == 400 and "ghost" in response.data["fields"]["baseModel"][0]


# --- FineTuningConfig for the family --------------------------------------------------------------


def test_config_defaults_of_the_family(api, maintainer, llm_model, settings):
    llm_model.default_dataset = AIModelFactory().default_dataset
    llm_model.save()
    response = api(maintainer).post(f"{API}/models/llama3.1:8b/fine-tune", {}, format="json")
    assert response.status_code == 202, response.data
    config = TrainingJob.objects.get(pk=response.data["id"]).config
    assert (config["epochs"], config["learningRate"], config["batchSize"]) == (3, 2e-4, 8)
    assert config["baseModel"] == "tiny-llama" and config["trainingDataSize"] == 0  # 0 = every training example
    assert config["hyperparameters"]["targetModules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"hyperparameters": {"targetModules": ["embed_tokens"]}}, "hyperparameters", "embed_tokens"),
        ({"hyperparameters": {"hiddenSizes": [64]}}, "hyperparameters", "unknown hyperparameter"),
        ({"hyperparameters": {"loraRank": 0}}, "hyperparameters", "at least 1"),
        ({"baseModel": "ghost"}, "baseModel", "no registered base model"),
        ({"batchSize": 0}, "batchSize", "at least 1"),
    ],
)
def test_bad_llm_configs_name_the_field(api, maintainer, llm_model, body, field, reason):
    response = api(maintainer).post(f"{API}/models/llama3.1:8b/fine-tune", body, format="json")
    assert response.status_code == 400, response.data
    assert reason in json.dumps(response.data["fields"][field])
    assert not TrainingJob.objects.exists()


# --- Predict without Ollama ---------------------------------------------------------------------


def test_predict_on_an_llm_model_without_ollama_is_409(api, maintainer, llm_model, tmp_path, settings):
    settings.OLLAMA_URL = ""
    ModelVersionFactory(model=llm_model, version="v1.0.0", artifact_path=str(artifact_dir(tmp_path / "v1")))
    activated = api(maintainer).post(f"{API}/models/llama3.1:8b/versions/v1.0.0/activate")
    assert activated.status_code == 200  # nothing to deliver without OLLAMA_URL
    assert "delivery" not in AuditEvent.objects.get(action="version.activated").after
    bars = [{"date": f"2020-{1 + i // 28:02d}-{1 + i % 28:02d}", "open": 100 + i, "high": 101 + i, "low": 99 + i,
             "close": 100.5 + i, "volume": 1000} for i in range(100)]  # fmt: skip
    response = api(maintainer).post(f"{API}/models/llama3.1:8b/predict", {"bars": bars}, format="json")
    assert response.status_code == 409
    assert response.data["code"] == "ollama_not_configured" and "OLLAMA_URL" in response.data["detail"]


# --- Artifact download (every family) ------------------------------------------------------------


@pytest.fixture
def with_artifact(db, tmp_path):
    model = AIModelFactory(name="mlp-model")
    grant(model.owner, model, Role.MAINTAINER)
    ModelVersionFactory(
        model=model, version="v1.0.0", status=VersionStatus.READY, artifact_path=str(artifact_dir(tmp_path / "art"))
    )
    return model


ARTIFACT = f"{API}/models/mlp-model/versions/v1.0.0/artifact"


def test_the_artifact_tarball_carries_a_manifest_of_checksums(api, with_artifact):
    viewer = UserFactory(role=Role.VIEWER)
    grant(viewer, with_artifact, Role.VIEWER)
    response = api(viewer).get(ARTIFACT)
    assert response.status_code == 200 and response["Content-Type"] == "application/gzip"
    assert 'filename="mlp-model-v1.0.0.tar.gz"' in response["Content-Disposition"]
    with tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content)), mode="r:gz") as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("mlp-model-v1.0.0/manifest.json").read())
        import hashlib

        for name, digest in manifest["files"].items():
            assert hashlib.sha256(tar.extractfile(f"mlp-model-v1.0.0/{name}").read()).hexdigest() == digest
    assert names == {f"mlp-model-v1.0.0/{n}" for n in (*manifest["files"], "manifest.json")}
    assert combined_checksum(manifest["files"]) == manifest["checksum"]


def test_artifact_permission_matrix(api, with_artifact):
    assert APIClient().get(ARTIFACT).status_code == 401
    assert api(UserFactory(role=Role.MAINTAINER)).get(ARTIFACT).status_code == 404  # no access: not revealed
    assert api(with_artifact.owner).get(f"{API}/models/mlp-model/versions/v9.9.9/artifact").status_code == 404


def test_a_tampered_artifact_is_not_served(api, with_artifact):
    version = with_artifact.versions.get()
    (Path(version.artifact_path) / "Modelfile").write_text("FROM evil\n")
    response = api(with_artifact.owner).get(ARTIFACT)
    assert response.status_code == 409 and response.data["code"] == "artifact_damaged"
    assert "Modelfile changed" in response.data["detail"]


def test_the_cli_registers_a_base(maintainer, tiny_base_dir, tmp_path):
    from django.core.management import CommandError, call_command

    out = io.StringIO()
    call_command(
        "register_base_model", "cli-base", str(tiny_base_dir), ollama_tag="cli:1b", user=maintainer.username, stdout=out
    )
    assert "registered cli-base: LlamaForCausalLM" in out.getvalue()
    with pytest.raises(CommandError, match="not a directory"):
        call_command("register_base_model", "x", str(tmp_path / "nope"), ollama_tag="x:1b", user=maintainer.username)
