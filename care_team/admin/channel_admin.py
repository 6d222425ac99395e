from django.contrib import admin
from django.core.exceptions import PermissionDenied

from care_team.admin.scoping import ORGANIZATION_FILTER, OrganizationScopedAdmin
from channels_app.models import InboxMessage, SandboxMessage
from patients.access import is_operator, may_delete, scoped
from scheduling.models import Delivery, MessageTemplate


@admin.register(SandboxMessage)
class SandboxMessageAdmin(admin.ModelAdmin):
    """Only fills up on development stacks (CHANNEL_SANDBOX); nothing here left the server."""

    def get_queryset(self, request):
        visible = scoped(Delivery.objects.all(), request.user).values("pk")
        return super().get_queryset(request).filter(delivery_id__in=visible)

    list_display = ["id", "created_at", "channel", "address", "delivery_id", "text"]
    list_filter = ["channel"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(InboxMessage)
class InboxMessageAdmin(OrganizationScopedAdmin):
    list_display = ["id", "patient", "created_at", "read_at", "delivery_id"]
    raw_id_fields = ["patient"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(MessageTemplate)
class MessageTemplateAdmin(OrganizationScopedAdmin):
    """Clinic templates; a row without organization overrides a built-in default for every
    clinic, so only operators write those. Members see them, read-only, and write their own
    organizations' rows (any member, as in the API); deleting is for the clinic's admins."""

    list_display = ["key", "language", "organization", "format", "updated_at"]
    list_filter = ["key", "language", ORGANIZATION_FILTER]
    search_fields = ["key", "body"]
    global_rows_visible = True

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organization" and not is_operator(request.user):
            kwargs["required"] = True
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if obj is not None and not is_operator(request.user) and "organization" in form.base_fields:
            # As in the API, a template never moves. Disabled, not read-only: the field
            # stays in the form, so the one-key-per-organization check still runs.
            form.base_fields["organization"].disabled = True
        return form

    def has_change_permission(self, request, obj=None) -> bool:
        return super().has_change_permission(request, obj) and (
            obj is None or obj.organization_id is not None or is_operator(request.user)
        )

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and may_delete(request.user, obj)

    def save_model(self, request, obj, form, change) -> None:
        if obj.organization_id is None and not is_operator(request.user):
            raise PermissionDenied("Global templates are written by operators.")
        super().save_model(request, obj, form, change)
