from django.contrib import admin
from django.utils.html import format_html

from channels_app.inbox import inbox_path
from patients.admin_scoping import (
    ORGANIZATION_FILTER,
    OrganizationScopedAdmin,
    user_sees_everything,
)
from patients.models import Contact, Membership, Organization, Patient
from scheduling.history import audit_lines
from scheduling.services import patient_reschedule


@admin.register(Organization)
class OrganizationAdmin(OrganizationScopedAdmin):
    list_display = ["name", "slug", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name", "slug"]

    def has_add_permission(self, request) -> bool:
        return user_sees_everything(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return user_sees_everything(request)


@admin.register(Membership)
class MembershipAdmin(OrganizationScopedAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", ORGANIZATION_FILTER]
    raw_id_fields = ["user"]

    def has_module_permission(self, request) -> bool:
        return user_sees_everything(request)  # memberships are the operators' to manage


class ContactInline(admin.TabularInline):
    model = Contact
    extra = 0
    fields = ["channel", "address", "verified_at", "blocked_at", "blocked_reason"]


@admin.register(Patient)
class PatientAdmin(OrganizationScopedAdmin):
    list_display = ["name", "organization", "timezone", "preferred_channel", "opted_out_at"]
    list_filter = [ORGANIZATION_FILTER, "preferred_channel", "timezone"]
    search_fields = ["name"]
    inlines = [ContactInline]
    readonly_fields = ["inbox_link", "audit_trail"]

    @admin.display(description="Audit trail")
    def audit_trail(self, obj: Patient) -> str:
        return audit_lines(obj)

    @admin.display(description="Web inbox link (send it to the patient)")
    def inbox_link(self, obj: Patient) -> str:
        if obj.pk is None:
            return "-"
        return format_html('<a href="{0}" target="_blank">{0}</a>', inbox_path(obj))

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        timing = {"timezone", "quiet_hours_start", "quiet_hours_end"} & set(form.changed_data)
        if change and timing:
            previous_zone = form.initial.get("timezone")
            patient_reschedule(obj, previous_zone=previous_zone)


@admin.register(Contact)
class ContactAdmin(OrganizationScopedAdmin):
    list_display = ["id", "patient", "channel", "verified_at", "blocked_at", "blocked_reason"]
    list_filter = ["channel", ("blocked_at", admin.EmptyFieldListFilter)]
    raw_id_fields = ["patient"]
