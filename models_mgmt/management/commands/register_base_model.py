"""Register a local Hugging Face directory as an llm-lora base model, through the same service as the API."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from models_mgmt.errors import ServiceError
from models_mgmt.services.base_models import base_model_register


class Command(BaseCommand):
    help = (
        "Register a base model directory (config, tokenizer, safetensors) for llm-lora models; nothing is downloaded."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name", help="registry name, e.g. llama3.1-8b-instruct")
        parser.add_argument("path", help="absolute directory on this server")
        parser.add_argument("--ollama-tag", required=True, help="the Ollama model these weights are, e.g. llama3.1:8b")
        parser.add_argument("--description", default="")
        parser.add_argument("--user", default="demo", help="who registers it (maintainer role)")

    def handle(self, *args: Any, name: str, path: str, ollama_tag: str, description: str, user: str, **_: Any) -> None:
        actor = get_user_model().objects.filter(username=user, is_active=True).first()
        if actor is None:
            raise CommandError(f"no active user '{user}'")
        try:
            base = base_model_register(
                actor=actor, name=name, path=path, ollama_tag=ollama_tag, description=description
            )
        except ServiceError as exc:
            details = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in exc.fields.items())
            raise CommandError(f"{exc.message} {details}".strip()) from exc
        self.stdout.write(
            f"registered {base.name}: {base.architecture}, {base.parameters or '?'} parameters, "
            f"{len(base.files)} files hashed, Ollama tag {base.ollama_tag}"
        )
