from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db import transaction

from models_mgmt.choices import ROLE_GLOBAL_PERMS


@transaction.atomic
def roles_ensure() -> dict[str, Group]:
    """The role groups with their global permissions (a migration creates them; this restores them)."""
    groups = {}
    for role, codenames in ROLE_GLOBAL_PERMS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.add(*Permission.objects.filter(content_type__app_label="models_mgmt", codename__in=codenames))
        groups[role] = group
    return groups
