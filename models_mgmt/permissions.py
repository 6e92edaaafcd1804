"""The one place permission guards live: object permissions on AI models (django-guardian) and
the global permissions of the role groups.

`has_model_perm` answers; `require_model_perm` is the guard a service calls before a change;
`model_perms_of` lists what a user holds (one guardian checker for all four).
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from guardian.core import ObjectPermissionChecker

from models_mgmt.choices import ROLE_OBJECT_PERMS, Role
from models_mgmt.errors import Forbidden
from models_mgmt.models import AIModel

APP = "models_mgmt"
# Who a request or command acts as (the project uses Django's default user model).
UserLike = User | AnonymousUser


def _signed_in(user: UserLike | None) -> User | None:
    """The user when signed in and active, else None."""
    if user is None or isinstance(user, AnonymousUser) or not user.is_active:
        return None
    return user


def has_model_perm(user: UserLike | None, model: AIModel, codename: str) -> bool:
    """True when the user holds `codename` on this model, directly, through a group, or as superuser."""
    signed_in = _signed_in(user)
    return signed_in is not None and signed_in.has_perm(f"{APP}.{codename}", model)


def has_global_perm(user: UserLike | None, codename: str) -> bool:
    """A role-wide permission such as `add_aimodel` or `change_dataset`."""
    signed_in = _signed_in(user)
    return signed_in is not None and signed_in.has_perm(f"{APP}.{codename}")


def require_model_perm(user: UserLike | None, model: AIModel, codename: str, action: str) -> User:
    """The guard of every model-scoped state change: Forbidden unless the user holds `codename`."""
    signed_in = _signed_in(user)
    if signed_in is None or not signed_in.has_perm(f"{APP}.{codename}", model):
        raise Forbidden(f"You may not {action} on AI model '{model.name}'.")
    return signed_in


def require_global_perm(user: UserLike | None, codename: str, message: str) -> User:
    """The guard of a role-wide change; returns the signed-in user it let through."""
    signed_in = _signed_in(user)
    if signed_in is None or not signed_in.has_perm(f"{APP}.{codename}"):
        raise Forbidden(message)
    return signed_in


def model_perms_of(user: UserLike | None, model: AIModel) -> list[str]:
    """The codenames the user holds on this model, for clients that show or hide actions.

    One guardian checker answers all four (2 queries) instead of one `has_perm` each.
    """
    managed = ROLE_OBJECT_PERMS[Role.MAINTAINER]
    signed_in = _signed_in(user)
    if signed_in is None:
        return []
    if signed_in.is_superuser:
        return list(managed)
    held = set(ObjectPermissionChecker(signed_in).get_perms(model))
    return [c for c in managed if c in held]
