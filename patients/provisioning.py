"""Provider accounts for the API and the admin: `manage.py create_provider`."""

from dataclasses import dataclass

from django.contrib.auth.models import Group, Permission, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction

from patients.api_tokens import api_token_issue
from patients.models import Membership, Organization, Role

CARE_TEAM_GROUP = "Care team"  # the demo login's group too (scheduling/demo.py)
CARE_TEAM_APPS = ("patients", "scheduling", "channels_app")


@dataclass(frozen=True)
class Provider:
    user: User
    organization: Organization
    role: str
    token: str | None  # only when one was asked for: the database keeps no copy
    created: bool  # the user is new


@transaction.atomic
def provider_create(
    *,
    organization_slug: str,
    username: str,
    admin: bool = False,
    password: str | None = None,
    new_token: bool = False,
    revoke_other_tokens: bool = False,
) -> Provider:
    """The organization (named after its slug if new), a staff user and their membership;
    with `new_token`, a new API token, shown only now (with `revoke_other_tokens`, their
    earlier ones stop working: a rotation). Running it again changes nothing else, except
    that `admin` promotes an existing staff member (it never demotes: that is an
    operator's decision, in the admin). With `password` (checked by Django's password
    validators) the user can log in to the admin and the web UI; without, a new user's
    password is unusable."""
    validate_slug(organization_slug)
    if not username or len(username) > 150:
        raise ValidationError("A username has 1 to 150 characters.")
    organization, _ = Organization.objects.get_or_create(
        slug=organization_slug,
        defaults={"name": organization_slug.replace("-", " ").replace("_", " ").title()},
    )
    user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True})
    if password is not None:
        validate_password(password, user)
        user.set_password(password)
        user.save()
    elif created:
        user.set_unusable_password()
        user.save()
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    user.groups.add(_care_team_group())
    membership, _ = Membership.objects.get_or_create(
        user=user,
        organization=organization,
        defaults={"role": Role.ADMIN if admin else Role.STAFF},
    )
    if admin and membership.role != Role.ADMIN:
        membership.role = Role.ADMIN
        membership.save(update_fields=["role"])
    token = api_token_issue(user, revoke_others=revoke_other_tokens) if new_token else None
    return Provider(user, organization, membership.role, token, created)


def _care_team_group() -> Group:
    """The admin permissions a care team needs; what they see is still scoped."""
    group, _ = Group.objects.get_or_create(name=CARE_TEAM_GROUP)
    group.permissions.add(*Permission.objects.filter(content_type__app_label__in=CARE_TEAM_APPS))
    return group
