"""The `llm-lora` family's registered base models, and the role groups' permissions on them."""

import django.db.models.deletion
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations, models

import models_mgmt.models.base_model

GRANTS = {
    "viewer": ("view_basemodel",),
    "trainer": ("view_basemodel",),
    "maintainer": ("view_basemodel", "add_basemodel"),
}


def grant(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.add(*Permission.objects.filter(content_type__app_label="models_mgmt", codename__in=codenames))


def revoke(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Permission.objects.filter(content_type__app_label="models_mgmt", codename__endswith="_basemodel").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("models_mgmt", "0009_intraday_bars"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="BaseModel",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100, unique=True, validators=[models_mgmt.models.base_model.base_model_name_validator])),
                ("path", models.CharField(help_text="Absolute directory on the server (config, tokenizer, safetensors).", max_length=500)),
                ("ollama_tag", models.CharField(max_length=200, validators=[models_mgmt.models.base_model.ollama_tag_validator])),
                ("architecture", models.CharField(max_length=100)),
                ("model_type", models.CharField(blank=True, max_length=50)),
                ("parameters", models.BigIntegerField(blank=True, null=True)),
                ("files", models.JSONField(default=dict, help_text="relative file name -> sha256")),
                ("eos_token", models.CharField(blank=True, max_length=100)),
                ("description", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("registered_by", models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={"verbose_name": "base model", "ordering": ["name"]},
        ),
        migrations.RunPython(grant, revoke),
    ]
