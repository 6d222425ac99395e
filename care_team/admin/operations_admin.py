"""Incidents for operators (superusers) only: what opened, when, whom it notified and
when it resolved. Read-only: the evaluation opens and resolves them
(operations/alerting.py); nothing here names a patient."""

from django.contrib import admin
from django.utils import timezone

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
    fields = ["when", "kind", "target", "detail"]
    readonly_fields = fields
    extra = 0
    verbose_name_plural = "timeline"

    @admin.display(description="at")
    def when(self, event: IncidentEvent) -> str:
        # To the second: a timeline's steps are often seconds apart.
        return timezone.localtime(event.at).strftime("%Y-%m-%d %H:%M:%S %Z")


class OpenOrResolved(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "Open"), ("resolved", "Resolved")]

    def queryset(self, request, queryset):
        if self.value() in ("open", "resolved"):
            return queryset.filter(resolved_at__isnull=self.value() == "open")
        return queryset


class IncidentNotificationInline(OperatorsOnly, admin.TabularInline):
    model = IncidentNotification
    verbose_name_plural = "notices"
    fields = ["notice", "target", "status", "attempts", "last_error", "sent_at"]
    readonly_fields = fields
    extra = 0


@admin.register(Incident)
class IncidentAdmin(OperatorsOnly, admin.ModelAdmin):
    list_display = ["id", "rule_key", "severity", "opened_at", "resolved_at", "summary"]
    list_filter = [OpenOrResolved, "severity"]
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
