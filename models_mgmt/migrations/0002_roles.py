"""Create the role groups (viewer, trainer, maintainer) with their global permissions.

Object permissions on each AI model are granted separately (django-guardian); a role group's
global permissions cover what is not tied to one model: datasets, registering models, the audit.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLE_GLOBAL_PERMS = {
    "viewer": ("view_dataset",),
    "trainer": ("view_dataset",),
    "maintainer": ("view_dataset", "add_dataset", "change_dataset", "add_aimodel", "view_auditevent"),
}


def create_roles(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in ROLE_GLOBAL_PERMS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.add(*Permission.objects.filter(content_type__app_label="models_mgmt", codename__in=codenames))


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(ROLE_GLOBAL_PERMS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("models_mgmt", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
