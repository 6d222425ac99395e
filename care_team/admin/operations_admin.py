"""Incidents for operators (superusers) only: what opened, when, whom it notified and
when it resolved. Read-only: the evaluation opens and resolves them
(operations/alerting.py); nothing here names a patient."""

from django.contrib import admin

from operations.models import Incident, IncidentEvent, IncidentNotification
from patients.access import is_operator


class OperatorsOnly:
    """Neither care teams nor anyone else sees these models; operators only read them."""

    def has_module_permission(self, request) -> bool:
        return is_operator(request.user)

    def has_view_permission(self, request, obj=None) -> bool:
        return is_operator(request.user)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class IncidentEventInline(OperatorsOnly, admin.TabularInline):
    model = IncidentEvent
    fields = ["at", "kind", "target", "detail"]
    readonly_fields = fields
    extra = 0
    verbose_name_plural = "timeline"


class IncidentNotificationInline(OperatorsOnly, admin.TabularInline):
    model = IncidentNotification
    fields = ["notice", "target", "status", "attempts", "last_error", "sent_at"]
    readonly_fields = fields
    extra = 0


@admin.register(Incident)
class IncidentAdmin(OperatorsOnly, admin.ModelAdmin):
    list_display = ["id", "rule_key", "severity", "opened_at", "resolved_at", "summary"]
    list_filter = ["severity", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["rule_key"]
    date_hierarchy = "opened_at"
    fields = [
        "rule_key",
        "severity",
        "summary",
        "value",
        "threshold",
        "opened_at",
        "last_firing_at",
        "resolved_at",
    ]
    readonly_fields = fields
    inlines = [IncidentEventInline, IncidentNotificationInline]
