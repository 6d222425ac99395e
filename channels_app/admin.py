from django.contrib import admin

from channels_app.models import InboxMessage, MessageTemplate, SandboxMessage


@admin.register(SandboxMessage)
class SandboxMessageAdmin(admin.ModelAdmin):
    """Only fills up on development stacks (CHANNEL_SANDBOX); nothing here left the server."""

    list_display = ["id", "created_at", "channel", "address", "delivery_id", "text"]
    list_filter = ["channel"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(InboxMessage)
class InboxMessageAdmin(admin.ModelAdmin):
    list_display = ["id", "patient", "created_at", "read_at", "delivery_id"]
    raw_id_fields = ["patient"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    """Clinic templates; a row without organization overrides a built-in default."""

    list_display = ["key", "language", "organization", "format", "updated_at"]
    list_filter = ["key", "language", "organization"]
    search_fields = ["key", "body"]
