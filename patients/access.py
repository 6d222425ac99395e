"""Who may see what: every queryset on every surface goes through these.

A provider sees only the organizations they are a member of; a superuser sees all.
Objects outside a user's organizations are simply not in their querysets, so every
surface answers "not found" for them, never "forbidden": their existence stays hidden.
"""

from django.db.models import QuerySet

from patients.models import Membership, Role

# How each model reaches its organization.
ORGANIZATION_PATH = {
    "organization": "pk",
    "membership": "organization",
    "patient": "organization",
    "contact": "patient__organization",
    "scheduledmessage": "organization",
    "delivery": "message__organization",
    "deliveryattempt": "delivery__message__organization",
    "inboxmessage": "patient__organization",
    "messagetemplate": "organization",
    "companionpersona": "organization",
    "checkinplan": "patient__organization",
    "checkin": "patient__organization",
    "followupstate": "patient__organization",
    "followup": "patient__organization",
}


def organization_ids(user) -> list[int] | None:
    """The user's organizations; None means all (a superuser)."""
    if not user.is_authenticated or not user.is_active:
        return []
    if user.is_superuser:
        return None
    return list(Membership.objects.filter(user=user).values_list("organization_id", flat=True))


def admin_organization_ids(user) -> list[int] | None:
    if user.is_superuser:
        return None
    return list(
        Membership.objects.filter(user=user, role=Role.ADMIN).values_list(
            "organization_id", flat=True
        )
    )


def scoped(queryset: QuerySet, user) -> QuerySet:
    """The part of the queryset the user may see."""
    allowed = organization_ids(user)
    if allowed is None:
        return queryset
    path = ORGANIZATION_PATH[queryset.model._meta.model_name]
    return queryset.filter(**{f"{path}__in": allowed})


def is_operator(user) -> bool:
    """Operators (active superusers) run the service: they alone manage memberships and
    organizations and write what every organization shares, such as global templates."""
    return organization_ids(user) is None


def organization_id_of(obj) -> int | None:
    """The organization an object belongs to (None: a global row, shared by all)."""
    *hops, last = ORGANIZATION_PATH[obj._meta.model_name].split("__")
    if last == "pk":
        return obj.pk
    for hop in hops:
        obj = getattr(obj, hop)
    return getattr(obj, f"{last}_id")


def is_member(user) -> bool:
    """Writing anything needs a membership (admin or staff) or operator rights (the API's
    MembersWrite); what may be written is then limited to the user's organizations."""
    return organization_ids(user) != []


def is_admin_of(user, obj=None) -> bool:
    """Whether the user is an admin of the object's organization (an operator is of all; a
    global row, without an organization, is the operators'). Without an object: whether
    they are an admin of any organization."""
    allowed = admin_organization_ids(user)
    if allowed is None:
        return True
    if obj is None:
        return bool(allowed)
    return organization_id_of(obj) in allowed


def may_delete(user, obj=None) -> bool:
    """Deleting a patient, template or contact is for an admin of its organization (the
    API's AdminsDelete); a global row is the operators'. Without an object: whether the
    user is an admin of any organization, i.e. may delete something."""
    return is_admin_of(user, obj)


def may_change_settings(user, organization=None) -> bool:
    """An organization's own settings (its name, its alert contact) are its admins' to
    change; its staff see them. Without an organization: whether the user may change any."""
    return is_admin_of(user, organization)
