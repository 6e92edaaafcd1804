from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from .ai_model import MODEL_NAME_PATTERN

# Ollama model names: [namespace/]name[:tag], lower-case name parts.
OLLAMA_TAG_PATTERN = r"[a-z0-9][a-z0-9._-]{0,79}(/[a-z0-9][a-z0-9._-]{0,79})?(:[A-Za-z0-9][A-Za-z0-9._-]{0,79})?"
ollama_tag_validator = RegexValidator(
    rf"^{OLLAMA_TAG_PATTERN}$", "An Ollama model tag such as 'llama3.1:8b' ([namespace/]name[:tag], lower-case name)."
)
base_model_name_validator = RegexValidator(
    rf"^{MODEL_NAME_PATTERN}$",
    "Use 1-100 letters, digits, '.', ':', '-' or '_', starting with a letter or digit.",
)


class BaseModel(models.Model):
    """A local language model in Hugging Face format that `llm-lora` models fine-tune.

    Registered once by a maintainer from a directory on the server; the sha256 of every file is
    recorded then and checked again before each training run. Nothing is ever downloaded.
    """

    name = models.CharField(max_length=100, unique=True, validators=[base_model_name_validator])
    path = models.CharField(
        max_length=500, help_text="Absolute directory on the server (config, tokenizer, safetensors)."
    )
    ollama_tag = models.CharField(max_length=200, validators=[ollama_tag_validator])
    architecture = models.CharField(max_length=100)
    model_type = models.CharField(max_length=50, blank=True)
    parameters = models.BigIntegerField(null=True, blank=True)
    files = models.JSONField(default=dict, help_text="relative file name -> sha256")
    eos_token = models.CharField(max_length=100, blank=True)
    description = models.TextField(blank=True)
    registered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "base model"

    def __str__(self) -> str:
        return self.name
