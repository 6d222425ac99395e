from django.contrib import admin, messages

from scheduling.models import Delivery, DeliveryAttempt, MessageStatus, ScheduledMessage
from scheduling.services import message_cancel


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class DeliveryInline(ReadOnlyInline):
    model = Delivery
    fields = ["occurrence_at", "channel", "status", "attempts", "sent_at", "error_code"]
    ordering = ["-occurrence_at"]


class AttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = ["number", "started_at", "finished_at", "outcome", "error_code", "error_text",
              "duration_ms"]  # fmt: skip


@admin.register(ScheduledMessage)
class ScheduledMessageAdmin(admin.ModelAdmin):
    list_display = ["id", "patient", "organization", "channel", "status", "next_run_at",
                    "recurrence", "priority"]  # fmt: skip
    list_filter = ["status", "channel", "organization", "priority"]
    search_fields = ["id", "patient__name"]
    date_hierarchy = "next_run_at"
    raw_id_fields = ["patient"]
    readonly_fields = ["organization", "next_run_at", "status_reason", "created_at", "updated_at"]
    inlines = [DeliveryInline]
    actions = ["cancel_messages"]

    def save_model(self, request, obj, form, change) -> None:
        obj.organization_id = obj.patient.organization_id
        if not change:
            obj.next_run_at = obj.starts_at
        super().save_model(request, obj, form, change)

    @admin.action(description="Cancel the selected messages")
    def cancel_messages(self, request, queryset) -> None:
        active = queryset.exclude(status=MessageStatus.CANCELLED)
        for message in active:
            message_cancel(message, reason=f"cancelled in the admin by user {request.user.pk}")
        self.message_user(request, f"{len(active)} messages cancelled.", messages.SUCCESS)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "message", "channel", "status", "occurrence_at", "attempts",
                    "sent_at", "error_code"]  # fmt: skip
    list_filter = ["status", "channel", "error_code"]
    date_hierarchy = "occurrence_at"
    search_fields = ["id", "message__id", "provider_message_id"]
    inlines = [AttemptInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
