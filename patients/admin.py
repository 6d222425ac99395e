from django.contrib import admin
from django.utils.html import format_html

from channels_app.inbox import inbox_path
from patients.models import Contact, Organization, Patient
from scheduling.services import patient_reschedule


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name", "slug"]


class ContactInline(admin.TabularInline):
    model = Contact
    extra = 0
    fields = ["channel", "address", "verified_at", "blocked_at", "blocked_reason"]


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "timezone", "preferred_channel", "opted_out_at"]
    list_filter = ["organization", "preferred_channel", "timezone"]
    search_fields = ["name"]
    inlines = [ContactInline]
    readonly_fields = ["inbox_link"]

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
class ContactAdmin(admin.ModelAdmin):
    list_display = ["id", "patient", "channel", "verified_at", "blocked_at", "blocked_reason"]
    list_filter = ["channel", ("blocked_at", admin.EmptyFieldListFilter)]
    raw_id_fields = ["patient"]
