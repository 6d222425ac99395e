from django.contrib import admin

from care_team.admin.scoping import ORGANIZATION_FILTER, OrganizationScopedAdmin
from channels_app.models import InboxMessage, SandboxMessage
from patients.access import scoped
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
    """Clinic templates; a row without organization (operators only) overrides a
    built-in default for everyone."""

    list_display = ["key", "language", "organization", "format", "updated_at"]
    list_filter = ["key", "language", ORGANIZATION_FILTER]
    search_fields = ["key", "body"]
