"""The dashboard for an llm-lora model: its family on the card, its base model and its own defaults
on the Fine-tuning tab, the artifact download on Versions."""

from __future__ import annotations

from django.test import Client

from models_mgmt.choices import Role, VersionStatus
from models_mgmt.models import BaseModel
from tests.factories import AIModelFactory, ModelVersionFactory, UserFactory, grant


def test_the_tabs_show_the_family_its_base_and_its_defaults(db):
    BaseModel.objects.create(name="tiny-llama", path="/srv/tiny", ollama_tag="tiny:1b", architecture="LlamaForCausalLM")
    model = AIModelFactory(name="llama3.1:8b", family="llm-lora", base_model="tiny-llama")
    ModelVersionFactory(model=model, version="v1.0.0", status=VersionStatus.READY)
    user = UserFactory(role=Role.MAINTAINER)
    grant(user, model, Role.MAINTAINER)
    client = Client()
    client.force_login(user)

    cards = client.get("/model-management/").content.decode()
    assert "llm-lora" in cards
    page = client.get("/model-management/fine-tuning/?model=llama3.1:8b").content.decode()
    assert "Base model" in page and "tiny-llama (registered local base" in page
    assert 'data-hp="loraRank"' in page and 'data-hp="targetModules"' in page and 'data-hp="hiddenSizes"' not in page
    assert 'name="epochs"' in page and 'value="3"' in page  # the family's default, not DEFAULT_TRAINING_EPOCHS
    versions = client.get("/model-management/versions/?model=llama3.1:8b").content.decode()
    assert "/api/model-management/models/llama3.1%3A8b/versions/v1.0.0/artifact" in versions
