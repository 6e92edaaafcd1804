"""Ollama delivery and serving of llm-lora versions, against a local server that implements the
documented REST contract (/api/blobs, /api/create, /api/generate) and records what it received;
and, only when OLLAMA_URL points at a real server, against that server."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from models_mgmt.choices import Role, VersionStatus
from models_mgmt.engine.features import FEATURE_NAMES
from models_mgmt.engine.llm.prompts import answer_schema, render_prompt
from models_mgmt.models import AuditEvent, Prediction
from models_mgmt.monitoring import serving
from models_mgmt.monitoring.ollama import OllamaClient, ollama_model_name
from models_mgmt.services import ai_model_create
from models_mgmt.services.base_models import base_model_register
from tests.factories import DatasetFactory, ModelVersionFactory, UserFactory
from tests.llm_base import tiny_spec, window_bars

API = "/api/model-management/models/llama3.1:8b"


class FakeOllama(ThreadingHTTPServer):
    """Ollama's blob, create and generate endpoints, keeping every request it got."""

    def __init__(self, refuse_adapters: bool = False):
        super().__init__(("127.0.0.1", 0), OllamaHandler)
        self.blobs: dict[str, bytes] = {}
        self.creates: list[dict] = []
        self.generates: list[dict] = []
        self.models: set[str] = set()
        self.refuse_adapters = refuse_adapters

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class OllamaHandler(BaseHTTPRequestHandler):
    server: FakeOllama

    def log_message(self, *args):  # keep test output quiet
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, lines: list[dict]) -> None:
        data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def do_HEAD(self):
        digest = self.path.removeprefix("/api/blobs/")
        self.send_response(200 if digest in self.server.blobs else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        if self.path.startswith("/api/blobs/"):
            digest, data = self.path.removeprefix("/api/blobs/"), self._body()
            if digest != "sha256:" + hashlib.sha256(data).hexdigest():
                return self._json(400, {"error": "digest mismatch"})
            self.server.blobs[digest] = data
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        payload = json.loads(self._body())
        if self.path == "/api/create":
            self.server.creates.append(payload)
            layers = {**payload.get("adapters", {}), **payload.get("files", {})}
            missing = [d for d in layers.values() if d not in self.server.blobs]
            if missing:
                return self._json(400, {"error": f"missing blobs {missing}"})
            if payload.get("adapters") and self.server.refuse_adapters:
                return self._stream([{"status": "parsing adapter"}, {"error": "unsupported adapter architecture"}])
            self.server.models.add(payload["model"])
            lines = [{"status": f"using existing layer {d}"} for d in layers.values()]
            return self._stream([*lines, {"status": "writing manifest"}, {"status": "success"}])
        if self.path == "/api/generate":
            self.server.generates.append(payload)
            if payload["model"] not in self.server.models:
                return self._json(404, {"error": f"model '{payload['model']}' not found"})
            answer = {"signal": "up", "risk": "normal", "pattern": "breakout"}
            return self._json(200, {"model": payload["model"], "response": json.dumps(answer), "done": True})
        return self._json(404, {"error": "no such endpoint"})


@pytest.fixture
def fake_ollama(settings):
    servers = []

    def start(refuse_adapters: bool = False) -> FakeOllama:
        server = FakeOllama(refuse_adapters)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        settings.OLLAMA_URL = server.url
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def trained_artifact(tiny_base_dir, tmp_path_factory):
    """A real adapter from a short run on the tiny base (engine only, no database)."""
    from models_mgmt.engine.llm.training import run_llm_training

    return run_llm_training(tiny_spec(tiny_base_dir), data=window_bars(), work_dir=tmp_path_factory.mktemp("ollama"))


@pytest.fixture
def llm_version(db, tiny_base_dir, trained_artifact, tmp_path):
    owner = UserFactory(role=Role.MAINTAINER)
    base_model_register(actor=owner, name="tiny-llama", path=str(tiny_base_dir), ollama_tag="tiny-llama:latest")
    dataset = DatasetFactory(name="sample", bars=300)
    model = ai_model_create(
        actor=owner, name="llama3.1:8b", family="llm-lora", base_model="tiny-llama", default_dataset=dataset
    )
    directory = shutil.copytree(trained_artifact.artifact_dir, tmp_path / "v1.0.0")
    return ModelVersionFactory(
        model=model,
        version="v1.0.0",
        status=VersionStatus.READY,
        artifact_path=str(directory),
        checksum=trained_artifact.checksum,
        metadata={"lineage": trained_artifact.lineage, "hyperparameters": trained_artifact.hyperparameters},
    )


def digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_activation_uploads_the_adapter_and_creates_the_model(api, llm_version, fake_ollama):
    server = fake_ollama()
    response = api(llm_version.model.owner).post(f"{API}/versions/v1.0.0/activate")
    assert response.status_code == 200, response.data
    adapter = Path(llm_version.artifact_path) / "adapter"
    expected = {name: digest(adapter / name) for name in ("adapter_model.safetensors", "adapter_config.json")}
    assert set(server.blobs) == set(expected.values())
    [create] = server.creates
    assert create["model"] == "techanal-llama3.1-8b:v1.0.0" == ollama_model_name("llama3.1:8b", "v1.0.0")
    assert create["from"] == "tiny-llama:latest" and create["adapters"] == expected
    assert create["template"] == "{{ .Prompt }}" and create["parameters"]["stop"] == ["</s>"]
    assert create["stream"] is True
    delivery = AuditEvent.objects.get(action="version.activated").after["delivery"]
    assert delivery["method"] == "adapter" and delivery["status"][-1] == "success"
    assert delivery["ollamaModel"] == create["model"] and delivery["blobsUploaded"] == 2
    llm_version.refresh_from_db()
    assert llm_version.status == VersionStatus.ACTIVE


def test_a_refused_adapter_is_merged_into_the_base_and_created_from_safetensors(api, llm_version, fake_ollama):
    server = fake_ollama(refuse_adapters=True)
    response = api(llm_version.model.owner).post(f"{API}/versions/v1.0.0/activate")
    assert response.status_code == 200, response.data
    refused, merged = server.creates
    assert "adapters" in refused and "files" in merged and "from" not in merged
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(merged["files"])
    assert all(d in server.blobs for d in merged["files"].values())
    delivery = AuditEvent.objects.get(action="version.activated").after["delivery"]
    assert delivery["method"] == "merged" and "unsupported adapter" in delivery["adapterRefused"]
    assert delivery["status"][-1] == "success"


def test_an_unreachable_ollama_activates_nothing(api, llm_version, settings):
    settings.OLLAMA_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    response = api(llm_version.model.owner).post(f"{API}/versions/v1.0.0/activate")
    assert response.status_code == 503 and response.data["code"] == "ollama_unreachable"
    llm_version.refresh_from_db()
    assert llm_version.status == VersionStatus.READY
    assert not AuditEvent.objects.filter(action="version.activated").exists()


def test_delivery_is_checked_against_permissions_first(api, llm_version, fake_ollama):
    server = fake_ollama()
    viewer = UserFactory(role=Role.VIEWER)
    from tests.factories import grant

    grant(viewer, llm_version.model, Role.VIEWER)
    assert api(viewer).post(f"{API}/versions/v1.0.0/activate").status_code == 403
    assert server.blobs == {} and server.creates == []


def bars_payload(count: int = 120) -> list[dict]:
    frame = window_bars().iloc[:count]
    return [
        {"date": day.isoformat(), "open": r.open, "high": r.high, "low": r.low, "close": r.close, "volume": r.volume}
        for day, r in zip(frame.index, frame.itertuples(index=False), strict=True)
    ]


def test_predict_asks_ollama_with_the_answer_schema_and_logs_the_prediction(api, llm_version, fake_ollama):
    server = fake_ollama()
    owner = llm_version.model.owner
    assert api(owner).post(f"{API}/versions/v1.0.0/activate").status_code == 200
    response = api(owner).post(f"{API}/predict", {"bars": bars_payload()}, format="json")
    assert response.status_code == 200, response.data
    assert response.data["version"] == "v1.0.0"
    assert response.data["outputs"] == {
        "signal": {"probability": 1.0, "prediction": "up"},
        "risk": {"probability": 0.0, "prediction": "normal"},
        "pattern": {"probability": 1.0, "prediction": "breakout"},
    }
    [asked] = server.generates
    assert asked["model"] == "techanal-llama3.1-8b:v1.0.0" and asked["format"] == answer_schema()
    features = serving.feature_row(window_bars().iloc[:120])
    assert asked["prompt"] == render_prompt(
        dict(zip(FEATURE_NAMES, features, strict=True)), horizon=5, breakout_window=20
    )
    logged = Prediction.objects.get(pk=response.data["predictionId"])
    assert logged.version == llm_version and logged.outputs == {"signal": 1.0, "risk": 0.0, "pattern": 1.0}


def test_predict_before_delivery_is_409(api, llm_version, fake_ollama, settings):
    settings.OLLAMA_URL = ""
    owner = llm_version.model.owner
    assert api(owner).post(f"{API}/versions/v1.0.0/activate").status_code == 200  # activated without Ollama
    fake_ollama()  # now a server appears that never received this version
    response = api(owner).post(f"{API}/predict", {"bars": bars_payload()}, format="json")
    assert response.status_code == 409 and response.data["code"] == "not_delivered"


@pytest.mark.skipif(not os.environ.get("OLLAMA_URL"), reason="OLLAMA_URL does not point at a real Ollama server")
def test_a_real_ollama_server_takes_blobs(tmp_path):
    client = OllamaClient(os.environ["OLLAMA_URL"], timeout_s=60)
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(64))
    sha = hashlib.sha256(blob.read_bytes()).hexdigest()
    assert client.has_blob(sha) is False
    assert client.push_blob(blob, sha) is True
    assert client.has_blob(sha) is True and client.push_blob(blob, sha) is False


def test_the_web_process_never_imports_torch_transformers_or_peft():
    """Base registration, delivery, Ollama serving and the artifact view all live in the web process."""
    import subprocess
    import sys

    script = (
        "import sys, django; django.setup(); "
        "import techanal.urls, models_mgmt.api.urls, models_mgmt.api.views.artifacts, "
        "models_mgmt.api.views.base_models, models_mgmt.monitoring.ollama, models_mgmt.services.base_models, "
        "models_mgmt.engine.llm.artifact; "
        "print([m for m in ('torch', 'transformers', 'peft') if m in sys.modules])"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_activating_the_active_version_again_delivers_it_again(api, llm_version, fake_ollama, settings):
    settings.OLLAMA_URL = ""
    owner = llm_version.model.owner
    assert api(owner).post(f"{API}/versions/v1.0.0/activate").status_code == 200
    server = fake_ollama()  # a new server: the 409 not_delivered says to activate again
    assert api(owner).post(f"{API}/versions/v1.0.0/activate").status_code == 200
    assert [c["model"] for c in server.creates] == ["techanal-llama3.1-8b:v1.0.0"]
    delivered = AuditEvent.objects.get(action="version.delivered")
    assert delivered.after["delivery"]["status"][-1] == "success"
    assert api(owner).post(f"{API}/predict", {"bars": bars_payload()}, format="json").status_code == 200
