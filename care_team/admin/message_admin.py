from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from care_team.admin.inlines import LatestRowsInline
from care_team.admin.scoping import ORGANIZATION_FILTER, OrganizationScopedAdmin
from channels_app.content import validate_content
from patients.access import is_member, is_operator
from scheduling.attachments import Upload, attachment_check, attachment_save, message_attachment
from scheduling.history import audit_lines, delivery_history
from scheduling.models import Delivery, DeliveryAttempt, MessageStatus, ScheduledMessage
from scheduling.occurrences import message_preview
from scheduling.phrases import PhraseError, parse_schedule
from scheduling.services import (
    RETRYABLE_STATUSES,
    choose_channel,
    delivery_retry,
    message_cancel,
    message_pause,
    message_plan_next,
    message_resume,
    message_send_now,
    validate_recurrence,
)


class OperatorsDelete:
    """Messages, deliveries and attempts are the record of what a patient was sent: as in
    the API, which cancels a message and keeps its deliveries, a member never deletes one
    (a clinic's admin erases them only with their patient). Operators still may."""

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and is_operator(request.user)


class ReadOnlyInline(LatestRowsInline):
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
    ordering = ["-number"]
    fields = ["number", "started_at", "finished_at", "outcome", "error_code", "error_text",
              "duration_ms"]  # fmt: skip


class ScheduledMessageForm(forms.ModelForm):
    """The same checks as scheduling.services.message_schedule, shown on the form."""

    when = forms.CharField(
        required=False,
        max_length=500,
        label="When (phrase)",
        help_text='For example "daily at 08:00", "weekly on mon,wed at 09:00", "tomorrow 15:30" '
        'or "every 2h", in the patient\'s time zone. Fills in the start and the rule.',
    )
    attachment = forms.FileField(
        required=False,
        label="Photo, voice note or document",
        help_text="Sent first, with the text as its caption where it fits. Each channel's "
        "size and type limits apply (README, Attachments).",
    )

    class Meta:
        model = ScheduledMessage
        fields = ["patient", "channel", "content", "format", "priority", "when", "starts_at",
                  "recurrence", "timezone", "ignore_quiet_hours", "delivery_window_seconds",
                  "metadata", "kind", "ack_timeout_minutes"]  # fmt: skip

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["starts_at"].required = False  # a phrase may give it
        self.fields["content"].required = False  # a photo may go alone (checked in clean)
        self.checked_attachment = None

    def clean(self):
        data = super().clean()
        patient = data.get("patient")
        if patient is None or self.errors:
            return data
        if data.get("when"):
            zone = data.get("timezone") or patient.timezone
            try:
                parsed = parse_schedule(data["when"], zone_name=zone, now=timezone.now())
            except PhraseError as error:
                self.add_error("when", str(error))
                return data
            data["starts_at"], data["recurrence"] = parsed.starts_at, parsed.rrule
        elif not data.get("starts_at"):
            self.add_error("starts_at", "Give a start, or a phrase under When.")
            return data
        try:
            choose_channel(patient, data.get("channel"))
            upload = _upload(data.get("attachment"))
            text, fmt = data.get("content") or "", data.get("format", "text")
            validate_content(data["channel"], text, fmt, may_be_empty=upload is not None)
            if upload is not None:
                self.checked_attachment = (
                    upload,
                    attachment_check(data["channel"], upload, text, fmt),
                )
            probe = ScheduledMessage(patient=patient, **{k: data.get(k) for k in (
                "recurrence", "starts_at", "timezone", "ignore_quiet_hours",
                "delivery_window_seconds")})  # fmt: skip
            validate_recurrence(probe)
            message_plan_next(probe, now=timezone.now())
            if probe.next_run_at is None:
                raise ValidationError({"starts_at": "The schedule has no occurrence to send."})
        except ValidationError as error:
            for field, problems in error.message_dict.items():
                self.add_error(field if field in self.fields else None, problems)
        return data


def _upload(file) -> Upload | None:
    if not file:
        return None
    file.seek(0)
    return Upload(data=file.read(), name=file.name or "")


@admin.register(ScheduledMessage)
class ScheduledMessageAdmin(OperatorsDelete, OrganizationScopedAdmin):
    form = ScheduledMessageForm
    list_display = ["id", "patient", "organization", "channel", "status", "next_run_at",
                    "recurrence", "priority"]  # fmt: skip
    list_filter = ["status", "channel", ORGANIZATION_FILTER, "priority"]
    search_fields = ["id", "patient__name"]
    date_hierarchy = "next_run_at"
    raw_id_fields = ["patient"]
    # Status changes go through actions, so a row can never be set active without a next run.
    readonly_fields = ["organization", "status", "status_reason", "next_run_at",
                       "upcoming_occurrences", "audit_trail", "created_at",
                       "updated_at", "created_by_patient", "attachment_summary"]  # fmt: skip
    inlines = [DeliveryInline]
    actions = ["cancel_messages", "send_now", "pause_messages", "resume_messages",
               "retry_failed_deliveries"]  # fmt: skip

    @admin.display(description="Audit trail")
    def audit_trail(self, obj: ScheduledMessage) -> str:
        return audit_lines(obj)

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        # A file is chosen when the message is written; its page then shows what it is.
        return [f for f in fields if f != "attachment"] if obj is not None else fields

    def save_model(self, request, obj, form, change) -> None:
        obj.organization_id = obj.patient.organization_id
        timing = {"starts_at", "recurrence", "timezone", "ignore_quiet_hours"}
        if obj.status == MessageStatus.ACTIVE and (not change or timing & set(form.changed_data)):
            message_plan_next(obj, now=timezone.now())
        obj.content = obj.content or ""
        super().save_model(request, obj, form, change)
        if not change and form.checked_attachment is not None:
            # Inside the admin's transaction: a failure here saves no message either.
            attachment_save(obj, *form.checked_attachment)

    @admin.display(description="Attachment")
    def attachment_summary(self, obj: ScheduledMessage) -> str:
        row = message_attachment(obj) if obj.pk else None
        if row is None:
            return "-"
        return f"{row.get_kind_display()}, {row.content_type}, {row.size} bytes"

    @admin.display(description="Next occurrences")
    def upcoming_occurrences(self, obj: ScheduledMessage) -> str:
        if obj.pk is None or obj.status != MessageStatus.ACTIVE:
            return "-"
        rows = message_preview(obj, count=5, after=timezone.now())
        return (
            format_html_join(
                mark_safe("<br>"),  # noqa: S308 - a constant
                "{} ({} UTC){}",
                (
                    (
                        row.local.strftime("%a %Y-%m-%d %H:%M %Z"),
                        row.utc.strftime("%H:%M"),
                        f", moved from {row.moved_from_local:%H:%M} by quiet hours"
                        if row.moved_from_local
                        else "",
                    )
                    for row in rows
                ),
            )
            or "no further occurrences"
        )

    def has_cancel_permission(self, request) -> bool:
        # The API lets every member cancel (MembersWrite); the admin also asks for its own
        # write permission, so an account given only the view permission stays read-only.
        return self.has_change_permission(request) and is_member(request.user)

    @admin.action(description="Cancel the selected messages", permissions=["cancel"])
    def cancel_messages(self, request, queryset) -> None:
        active = queryset.exclude(status=MessageStatus.CANCELLED)
        for message in active:
            message_cancel(message, reason=f"cancelled in the admin by user {request.user.pk}",
                           actor=request.user)  # fmt: skip
        self.message_user(request, f"{len(active)} messages cancelled.", messages.SUCCESS)

    @admin.action(description="Send the selected messages now")
    def send_now(self, request, queryset) -> None:
        sent = 0
        for message in queryset.select_related("patient"):
            try:
                message_send_now(message, actor=request.user)
                sent += 1
            except ValidationError as error:
                self.message_user(request, f"Message {message.pk}: {error.messages[0]}",
                                  messages.WARNING)  # fmt: skip
        self.message_user(request, f"{sent} messages queued to send now.", messages.SUCCESS)

    @admin.action(description="Pause the selected messages")
    def pause_messages(self, request, queryset) -> None:
        paused = sum(message_pause(m, actor=request.user, reason=f"paused by user "
                                   f"{request.user.pk}") for m in queryset)  # fmt: skip
        self.message_user(request, f"{paused} messages paused.", messages.SUCCESS)

    @admin.action(description="Resume the selected paused messages")
    def resume_messages(self, request, queryset) -> None:
        resumed = sum(message_resume(m, actor=request.user) for m in queryset)
        self.message_user(request, f"{resumed} messages resumed.", messages.SUCCESS)

    @admin.action(description="Retry the failed deliveries of the selected messages")
    def retry_failed_deliveries(self, request, queryset) -> None:
        failed = Delivery.objects.filter(message__in=queryset, status__in=RETRYABLE_STATUSES)
        retried = sum(delivery_retry(d, actor=request.user) for d in failed)
        self.message_user(request, f"{retried} deliveries queued again.", messages.SUCCESS)


@admin.register(Delivery)
class DeliveryAdmin(OperatorsDelete, OrganizationScopedAdmin):
    list_display = ["id", "message", "channel", "status", "occurrence_at", "attempts",
                    "sent_at", "error_code"]  # fmt: skip
    list_filter = ["status", "channel", "error_code"]
    date_hierarchy = "occurrence_at"
    search_fields = ["id", "message__id", "provider_message_id"]
    readonly_fields = ["history"]
    inlines = [AttemptInline]
    actions = ["retry_deliveries"]

    @admin.display(description="Status history")
    def history(self, obj: Delivery) -> str:
        return format_html_join(
            mark_safe("<br>"),  # noqa: S308 - a constant
            "{} &nbsp; {}",
            ((f"{at:%Y-%m-%d %H:%M:%S} UTC", text) for at, text in delivery_history(obj)),
        )

    @admin.action(description="Retry the selected failed or expired deliveries")
    def retry_deliveries(self, request, queryset) -> None:
        retried = 0
        for delivery in queryset.filter(status__in=RETRYABLE_STATUSES):
            if delivery_retry(delivery, actor=request.user):
                retried += 1
                self.log_change(request, delivery, "Retried by hand")
        skipped = queryset.count() - retried
        self.message_user(request, f"{retried} deliveries queued again, {skipped} skipped "
                          "(only failed or expired ones of messages not cancelled).",
                          messages.SUCCESS if retried else messages.WARNING)  # fmt: skip

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(OperatorsDelete, OrganizationScopedAdmin):
    """Every attempt of a delivery, behind its page's latest ones; written by the workers
    only, read-only for everyone, deleted by operators (or with their patient)."""

    list_display = ["id", "delivery", "number", "started_at", "outcome", "error_code"]
    list_filter = ["outcome"]
    date_hierarchy = "started_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
