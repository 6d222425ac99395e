"""The companion's persona per organization, each patient's check-in plan (an inline on
the patient's page) and the check-ins it made: which path wrote each, and why."""

from django import forms
from django.contrib import admin

from care_team.admin.scoping import ORGANIZATION_FILTER, OrganizationScopedAdmin, ScopedForeignKeys
from outreach.follow_ups import response_rate
from outreach.models import CheckIn, CheckInPlan, CompanionPersona, FollowUp, FollowUpState
from outreach.plans import fill_in_coordinates


@admin.register(CompanionPersona)
class CompanionPersonaAdmin(OrganizationScopedAdmin):
    list_display = [
        "organization",
        "companion_name",
        "support_style",
        "default_language",
        "check_ins_enabled",
        "check_ins_for_new_patients",
        "share_context_with_llm",
    ]
    list_filter = [ORGANIZATION_FILTER]
    readonly_fields = ["follow_up_response_rate"]

    @admin.display(description="Follow-ups answered (last 30 days)")
    def follow_up_response_rate(self, obj: CompanionPersona) -> str:
        answered, sent = response_rate(obj.organization_id)
        if not sent:
            return "no follow-ups yet"
        return f"{answered} of {sent} ({answered / sent:.0%})"


class CheckInPlanForm(forms.ModelForm):
    class Meta:
        model = CheckInPlan
        fields = ["enabled", "local_time", "window_minutes", "place_name", "latitude", "longitude"]

    def clean(self):
        data = super().clean()
        problem = fill_in_coordinates(data)
        if problem:
            raise forms.ValidationError({"place_name": problem})
        return data


class CheckInPlanInline(ScopedForeignKeys, admin.StackedInline):
    model = CheckInPlan
    form = CheckInPlanForm
    extra = 0
    max_num = 1
    can_delete = True
    verbose_name = "daily check-in"
    readonly_fields = ["next_at", "stopped_reason"]


class HistoryAdmin(OrganizationScopedAdmin):
    """What the companion did: read, never written by hand."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CheckIn)
class CheckInAdmin(HistoryAdmin):
    list_display = [
        "patient",
        "local_date",
        "due_at",
        "status",
        "source",
        "fallback_reason",
        "model",
        "latency_ms",
        "with_weather",
        "with_context",
    ]
    list_filter = ["status", "source", "fallback_reason"]
    search_fields = ["patient__name"]
    date_hierarchy = "due_at"
    readonly_fields = [f.name for f in CheckIn._meta.fields]


class FollowUpStateInline(ScopedForeignKeys, admin.StackedInline):
    model = FollowUpState
    extra = 0
    max_num = 1
    can_delete = False
    verbose_name = "follow-ups when quiet"
    verbose_name_plural = "follow-ups when quiet"
    fields = ["enabled", "next_at"]
    readonly_fields = ["next_at"]


@admin.register(FollowUp)
class FollowUpAdmin(HistoryAdmin):
    list_display = [
        "patient",
        "kind",
        "due_at",
        "status",
        "source",
        "fallback_reason",
        "responded_at",
        "requested_by",
    ]
    list_filter = ["kind", "status", "source"]
    search_fields = ["patient__name"]
    date_hierarchy = "due_at"
    readonly_fields = [f.name for f in FollowUp._meta.fields]
