from datetime import timedelta
from functools import partial

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from care_team.admin.contact_form import ContactForm
from care_team.admin.daily_reports import daily_report_page, yesterdays_report
from care_team.admin.inlines import LatestRowsInline
from care_team.admin.outreach_admin import CheckInPlanInline, FollowUpStateInline
from care_team.admin.scoping import (
    ORGANIZATION_FILTER,
    OrganizationScopedAdmin,
    user_sees_everything,
)
from outreach.follow_ups import follow_up_schedule
from patients.access import may_change_settings, may_delete
from patients.contacts import contact_confirm
from patients.inbox_links import inbox_link_issue, inbox_link_state, inbox_links_revoke
from patients.linking import link_qr_svg, link_token_create
from patients.models import Contact, Membership, Organization, Patient
from scheduling.adherence import patient_adherence
from scheduling.history import audit_lines
from scheduling.models import Delivery, DeliveryAttempt, ScheduledMessage
from scheduling.services import patient_deactivate, patient_reschedule


@admin.register(Organization)
class OrganizationAdmin(OrganizationScopedAdmin):
    """Operators create and delete organizations; a clinic's admins change its settings
    (its name, the alert contact told of missed doses); its staff see them, read-only."""

    list_display = ["name", "slug", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name", "slug"]
    actions = [yesterdays_report]

    def get_urls(self):
        page = path(
            "daily-report/",
            self.admin_site.admin_view(partial(daily_report_page, self)),
            name="patients_organization_daily_report",
        )
        return [page, *super().get_urls()]

    def get_readonly_fields(self, request, obj=None):
        # The slug names the organization to the API and to create_provider, and is unique
        # over all clinics (a clash would tell a member another clinic's slug exists).
        return () if user_sees_everything(request) else ("slug",)

    def get_prepopulated_fields(self, request, obj=None):
        return self.prepopulated_fields if user_sees_everything(request) else {}

    def has_add_permission(self, request) -> bool:
        return user_sees_everything(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return super().has_change_permission(request, obj) and may_change_settings(
            request.user, obj
        )

    def has_delete_permission(self, request, obj=None) -> bool:
        return user_sees_everything(request)


@admin.register(Membership)
class MembershipAdmin(OrganizationScopedAdmin):
    """Memberships are the operators' to manage, as in the API (which has none): a member
    who could would promote themselves, add anyone to their clinic, or read usernames."""

    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", ORGANIZATION_FILTER]
    raw_id_fields = ["user"]

    def has_module_permission(self, request) -> bool:
        return user_sees_everything(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return user_sees_everything(request)

    def has_add_permission(self, request) -> bool:
        return user_sees_everything(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return user_sees_everything(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return user_sees_everything(request)


VERIFICATION_FIELDS = ["verified_at", "verified_via", "verified_by"]


class ContactInline(LatestRowsInline):
    model = Contact
    form = ContactForm
    fields = ["channel", "address", "confirm", *VERIFICATION_FIELDS, "blocked_at", "blocked_reason"]
    readonly_fields = VERIFICATION_FIELDS
    ordering = ["-created_at", "-id"]

    def has_delete_permission(self, request, obj=None) -> bool:
        # obj is the patient, whose organization is the contacts'
        return super().has_delete_permission(request, obj) and may_delete(request.user, obj)


PATIENT_HISTORY = (ScheduledMessage, Delivery, DeliveryAttempt)


@admin.register(Patient)
class PatientAdmin(OrganizationScopedAdmin):
    list_display = ["name", "organization", "timezone", "preferred_channel", "opted_out_at"]
    list_filter = [ORGANIZATION_FILTER, "preferred_channel", "timezone"]
    search_fields = ["name"]
    inlines = [ContactInline, CheckInPlanInline, FollowUpStateInline]
    readonly_fields = [
        "inbox_link",
        "adherence",
        "last_interaction_at",
        "deactivated_at",
        "audit_trail",
    ]
    actions = [
        "create_telegram_links",
        "issue_inbox_links",
        "revoke_inbox_links",
        "follow_up_in_24_hours",
        "deactivate_patients",
    ]

    def get_actions(self, request):
        # A patient is deactivated, as the API does; deleting one (and their whole
        # history) stays possible on their own page, for the clinic's admins.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and may_delete(request.user, obj)

    def get_deleted_objects(self, objs, request):
        # A patient's messages, deliveries and attempts are read-only history that no
        # member deletes on its own (OperatorsDelete); erasing the patient, which their
        # clinic's admin may do, erases it with them.
        to_delete, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        if all(may_delete(request.user, patient) for patient in objs):
            perms_needed -= {model._meta.verbose_name for model in PATIENT_HISTORY}
        return to_delete, counts, perms_needed, protected

    def has_deactivate_permission(self, request) -> bool:
        return self.has_change_permission(request) and may_delete(request.user)

    @admin.action(
        description="Deactivate the selected patients (no more messages; history kept)",
        permissions=["deactivate"],
    )
    def deactivate_patients(self, request, queryset):
        done, refused = 0, 0
        for patient in queryset:
            if not may_delete(request.user, patient):
                refused += 1
                continue
            reason = f"patient deactivated in the admin by user {request.user.pk}"
            patient_deactivate(patient, actor=request.user, reason=reason)
            done += 1
        self.message_user(request, f"{done} patient(s) deactivated.")
        if refused:
            self.message_user(
                request,
                f"{refused} patient(s) left as they were: only an admin of their "
                "organization may deactivate them.",
                level=messages.WARNING,
            )

    @admin.action(
        description="Follow up with the selected patients in 24 hours", permissions=["change"]
    )
    def follow_up_in_24_hours(self, request, queryset):
        at = timezone.now() + timedelta(hours=24)
        planned, refused = 0, []
        for patient in queryset:
            try:
                follow_up_schedule(patient, at=at, actor=request.user)
                planned += 1
            except ValidationError as exc:
                refused.append(f"{patient}: {' '.join(exc.messages)}")
        self.message_user(request, f"{planned} follow-up(s) planned for {at:%Y-%m-%d %H:%M} UTC.")
        for reason in refused:
            self.message_user(request, reason, level=messages.WARNING)

    @admin.display(description="Medication adherence")
    def adherence(self, obj: Patient) -> str:
        if obj.pk is None:
            return "-"
        return adherence_lines(obj)

    @admin.action(
        description="Create Telegram links (QR codes) for the selected patients",
        permissions=["change"],
    )
    def create_telegram_links(self, request, queryset):
        # One page of QR codes at a time; a link made and not shown would be lost anyway.
        issued = [(p, link_token_create(patient=p, actor=request.user)) for p in queryset[:50]]
        rows = [(patient, link, link_qr_svg(link.url) if link.url else "")
                for patient, link in issued]  # fmt: skip
        context = {**self.admin_site.each_context(request), "rows": rows,
                   "title": "Telegram links", "opts": self.model._meta}  # fmt: skip
        # Admin pages are never cached (no-store), so the links stay on this screen only.
        return TemplateResponse(request, "admin/patients/telegram_links.html", context)

    @admin.action(
        description="Issue new web inbox links for the selected patients (old links stop)",
        permissions=["change"],
    )
    def issue_inbox_links(self, request, queryset):
        # Only the hash is stored: the link is shown on this page once, never again.
        rows, refused = [], []
        for patient in queryset[:50]:
            try:
                link = inbox_link_issue(patient=patient, actor=request.user)
            except ValidationError as exc:
                refused.append(f"{patient}: {' '.join(exc.messages)}")
                continue
            rows.append((patient, request.build_absolute_uri(link.path), link.expires_at))
        for reason in refused:
            self.message_user(request, reason, level=messages.WARNING)
        context = self.admin_site.each_context(request)
        context.update(rows=rows, title="Web inbox links", opts=self.model._meta)
        return TemplateResponse(request, "admin/patients/inbox_links.html", context)

    @admin.action(
        description="Revoke the selected patients' web inbox links", permissions=["change"]
    )
    def revoke_inbox_links(self, request, queryset):
        revoked = sum(inbox_links_revoke(patient=p, actor=request.user) for p in queryset)
        self.message_user(request, f"{revoked} web inbox link(s) revoked.")

    @admin.display(description="Audit trail")
    def audit_trail(self, obj: Patient) -> str:
        return audit_lines(obj)

    @admin.display(description="Web inbox link")
    def inbox_link(self, obj: Patient) -> str:
        link = inbox_link_state(obj) if obj.pk is not None else None
        if link is None:
            return "None. Use the action *Issue new web inbox links* to make one."
        return (
            f"Issued {link.created_at:%Y-%m-%d %H:%M}, expires {link.expires_at:%Y-%m-%d %H:%M} UTC"
        )

    def save_formset(self, request, form, formset, change) -> None:
        super().save_formset(request, form, formset, change)
        confirm_ticked_contacts(request, formset)

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        timing = {"timezone", "quiet_hours_start", "quiet_hours_end"} & set(form.changed_data)
        if change and timing:
            previous_zone = form.initial.get("timezone")
            patient_reschedule(obj, previous_zone=previous_zone)


@admin.register(Contact)
class ContactAdmin(OrganizationScopedAdmin):
    form = ContactForm
    list_display = ["id", "patient", "channel", "verified_at", "blocked_at", "blocked_reason"]
    list_filter = ["channel", ("blocked_at", admin.EmptyFieldListFilter)]
    raw_id_fields = ["patient"]
    readonly_fields = VERIFICATION_FIELDS
    actions = ["confirm_contacts"]

    @admin.action(
        description="Confirm the selected contacts (checked with the patient)",
        permissions=["change"],
    )
    def confirm_contacts(self, request, queryset):
        confirmed = sum(contact_confirm(c, actor=request.user) for c in queryset)
        self.message_user(request, f"{confirmed} contact(s) confirmed by you, now.")

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if form.cleaned_data.get("confirm"):
            contact_confirm(obj, actor=request.user)

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and may_delete(request.user, obj)


def confirm_ticked_contacts(request, formset) -> None:
    """The contacts whose "Confirmed with the patient" box was ticked, confirmed by the
    user (the patient page's contact inline)."""
    if formset.model is not Contact:
        return
    for form in formset.forms:
        ticked = getattr(form, "cleaned_data", {}).get("confirm")
        if ticked and not form.cleaned_data.get("DELETE") and form.instance.pk is not None:
            contact_confirm(form.instance, actor=request.user)


def adherence_lines(patient: Patient) -> str:
    return format_html_join(
        mark_safe("<br>"),  # noqa: S308 - a constant
        "last {} days: {} taken, {} missed, {} skipped{}",
        (
            (row.days, row.taken, row.missed, row.skipped,
             f" ({row.taken_share:.0%} taken)" if row.taken_share is not None else "")
            for row in patient_adherence(patient)
        ),
    )  # fmt: skip
