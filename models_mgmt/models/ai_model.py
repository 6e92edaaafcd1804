from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

MODEL_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9.:_-]{0,99}"
model_name_validator = RegexValidator(
    rf"^{MODEL_NAME_PATTERN}$",
    "Use 1-100 letters, digits, '.', ':', '-' or '_', starting with a letter or digit.",
)


class AIModel(models.Model):
    """A registry entry: a named model trained by one trainer family."""

    name = models.CharField(max_length=100, unique=True, validators=[model_name_validator])
    family = models.CharField(max_length=50, help_text="Which trainer trains this model.")
    base_model = models.CharField(max_length=200, blank=True, help_text="What the first version starts from.")
    description = models.TextField(blank=True)
    default_dataset = models.ForeignKey(
        "models_mgmt.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ai_models")
    event_seq = models.PositiveIntegerField(default=0, help_text="seq of the model's last own feed event")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "AI model"
        permissions = [
            ("finetune_aimodel", "Can fine-tune the AI model"),
            ("activate_aimodel", "Can activate versions of the AI model"),
            ("manage_aimodel", "Can manage the AI model and its access"),
        ]

    def __str__(self) -> str:
        return self.name
