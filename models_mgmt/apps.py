from django.apps import AppConfig


class ModelsMgmtConfig(AppConfig):
    name = "models_mgmt"
    verbose_name = "Model management"
    default_auto_field = "django.db.models.BigAutoField"
