"""What the API does, as plain functions over already-checked input: create, change,
cancel and preview messages, save patients with their contacts, list templates.

Writes go through the scheduling services, so the API validates exactly as the admin
does. Service errors name the service's fields (`params`, `starts_at`); they are renamed
here to the API's (`parameters`, the timing field the request used).
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from zoneinfo import ZoneInfo

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from channels_app.content import validate_content
from patients.access import may_delete, organization_ids, scoped
from patients.contacts import contact_unverify
from patients.models import Contact, Organization, Patient
from scheduling.attachments import Upload, attachment_recheck, message_attachment
from scheduling.creation import MessageRequest, message_create, message_timing
from scheduling.message_templates import default_templates
from scheduling.models import Delivery, MessageStatus, MessageTemplate, ScheduledMessage
from scheduling.occurrences import PreviewRow, message_preview
from scheduling.recurrence import local_wall_time, resolve_local
from scheduling.services import (
    RETRYABLE_STATUSES,
    choose_channel,
    delivery_retry,
    message_cancel,
    message_plan_next,
    patient_reschedule,
    validate_recurrence,
)
from scheduling.services import patient_deactivate as deactivate

logger = logging.getLogger(__name__)

TIMING_FIELDS = ("scheduled_time", "schedule", "recurrence")
EDITABLE_STATUSES = (MessageStatus.ACTIVE, MessageStatus.PAUSED)
DETAIL_DELIVERIES = 100  # a minutely schedule makes thousands; the detail shows the latest
NO_OCCURRENCE = "The schedule has no occurrence still to send."
# Service field name -> API field name; "starts_at" becomes the timing field used.
API_NAMES = {
    "params": "parameters",
    "ignore_quiet_hours": "quiet_hours_override",
    "zone_name": "timezone",
    "__all__": "non_field_errors",
}


def api_error(error: ValidationError, *, timing_field: str) -> ValidationError:
    """The same error, under the names the API's client sent."""
    if not hasattr(error, "error_dict"):
        return ValidationError({"non_field_errors": error.messages})
    names = {**API_NAMES, "starts_at": timing_field}
    return ValidationError(
        {names.get(name, name): messages for name, messages in error.message_dict.items()}
    )


def _timing_field(data: dict) -> str:
    return next(
        (name for name in TIMING_FIELDS if data.get(name) not in (None, "", {})), "scheduled_time"
    )


def default_organization(user, given: Organization | None) -> Organization:
    """The organization a new patient or template belongs to: the one given (already
    scoped to the user's), else the user's only one."""
    if given is not None:
        return given
    allowed = organization_ids(user)
    if allowed is not None and len(allowed) == 1:
        return Organization.objects.get(pk=allowed[0])
    raise ValidationError(
        {"organization": "Name the organization (by its slug): you may write to several."}
    )


# --- Messages ---------------------------------------------------------------------------


def visible_messages(user) -> QuerySet[ScheduledMessage]:
    return scoped(ScheduledMessage.objects.select_related("patient", "organization"), user)


def message_details(user) -> QuerySet[ScheduledMessage]:
    """Messages with their latest deliveries and those deliveries' attempts."""
    recent = scoped(Delivery.objects.order_by("-occurrence_at", "-pk"), user).prefetch_related(
        "attempt_log"
    )
    return (
        visible_messages(user)
        .annotate(delivery_count=Count("deliveries"))
        .prefetch_related(
            Prefetch("deliveries", queryset=recent[:DETAIL_DELIVERIES], to_attr="recent_deliveries")
        )
    )


def message_request(data: dict) -> MessageRequest:
    return MessageRequest(
        patient=data["patient"],
        content=data.get("content"),
        format=data.get("format", "text"),
        template=data.get("template"),
        parameters=data.get("parameters") or {},
        scheduled_time=data.get("scheduled_time"),
        schedule=data.get("schedule"),
        recurrence=data.get("recurrence"),
        timezone=data.get("timezone") or "",
        channel=data.get("channel"),
        priority=data.get("priority", 3),
        delivery_window_seconds=data.get("delivery_window_seconds"),
        quiet_hours_override=data.get("quiet_hours_override", False),
        attachment=_upload(data.get("attachment"), data.get("attachment_kind", "")),
    )


def _upload(file, kind: str) -> Upload | None:
    if file is None:
        return None
    return Upload(data=file.read(), name=file.name or "", kind=kind)


def message_create_checked(data: dict) -> ScheduledMessage:
    """`message_create` for the API: its errors under the API's field names."""
    timing_field = _timing_field(data)
    try:
        return message_create(message_request(data))
    except ValidationError as error:
        raise api_error(error, timing_field=timing_field) from error
    except OverflowError as error:  # a rule whose dates run past year 9999
        raise ValidationError({timing_field: "The schedule runs out of range."}) from error


def not_editable_reason(message: ScheduledMessage) -> str | None:
    """Why the message cannot be changed any more, or None. A message can be changed while
    it is active or paused; a one-time message only until its delivery exists (it is then
    on its way, and a change would not reach it)."""
    if message.status not in EDITABLE_STATUSES:
        return f"A {message.status} message cannot be changed."
    if not message.recurrence and message.deliveries.exists():
        return "This one-time message has been dispatched; cancel it or send a new one."
    return None


@transaction.atomic
def message_update(message: ScheduledMessage, changes: dict) -> ScheduledMessage:
    """Applies the changes with the creation checks; a new time, rule, zone, quiet-hours
    override or window plans the next occurrence again (nothing missed is sent)."""
    message = (
        ScheduledMessage.objects.select_for_update(of=("self",))
        .select_related("patient")
        .get(pk=message.pk)
    )
    if reason := not_editable_reason(message):
        raise ValidationError({"status": reason})
    timing_field = _timing_field(changes)
    try:
        replan = _apply_changes(message, changes, timing_field)
        # A photo may go without a text, as at creation; a new channel or text must still
        # suit the file (its size, type and caption limits on that channel).
        with_file = message_attachment(message) is not None
        validate_content(message.channel, message.content, message.format, may_be_empty=with_file)
        if with_file and {"channel", "content", "format"} & set(changes):
            attachment_recheck(message)
        without_text = ["content"] if with_file and not message.content else []
        message.full_clean(exclude=["next_run_at", "next_occurrence_at", *without_text])
        validate_recurrence(message)
        if replan:
            message_plan_next(message, now=timezone.now())
            if message.status == MessageStatus.COMPLETED:
                raise ValidationError({"starts_at": NO_OCCURRENCE})
    except ValidationError as error:
        raise api_error(error, timing_field=timing_field) from error
    except OverflowError as error:
        raise ValidationError({timing_field: "The schedule runs out of range."}) from error
    message.save()
    logger.info("message %s changed through the API", message.pk)
    return message


def _apply_changes(message: ScheduledMessage, changes: dict, timing_field: str) -> bool:
    previous_zone = message.zone_name
    if "timezone" in changes:
        message.timezone = changes["timezone"]
    if timing_field in changes:
        request = MessageRequest(
            patient=message.patient,
            timezone=message.timezone,
            **{timing_field: changes[timing_field]},
        )
        starts_at, message.recurrence = message_timing(request)
        message.starts_at = starts_at.replace(microsecond=0)
    elif message.zone_name != previous_zone:
        # Like a patient's move: 08:00 in the old zone stays 08:00 in the new one.
        wall = local_wall_time(message.starts_at, ZoneInfo(previous_zone))
        message.starts_at = resolve_local(wall, ZoneInfo(message.zone_name))
    for name, attribute in (
        ("content", "content"),
        ("format", "format"),
        ("priority", "priority"),
        ("delivery_window_seconds", "delivery_window_seconds"),
        ("quiet_hours_override", "ignore_quiet_hours"),
    ):
        if name in changes:
            setattr(message, attribute, changes[name])
    if "channel" in changes:
        message.channel = choose_channel(message.patient, changes["channel"])
        message.channel_fixed = bool(changes["channel"])
    replanning = {*TIMING_FIELDS, "timezone", "quiet_hours_override", "delivery_window_seconds"}
    return bool(replanning & set(changes))


def message_cancel_by(message: ScheduledMessage, *, actor) -> ScheduledMessage:
    """Cancels (idempotent: an already cancelled message is left as it is)."""
    if message.status != MessageStatus.CANCELLED:
        message_cancel(message, reason=f"cancelled through the API by user {actor.pk}", actor=actor)
    return message


def message_retry_failed(message: ScheduledMessage, *, user) -> int:
    """Queues the message's failed and expired deliveries again; how many were."""
    failed = scoped(Delivery.objects.filter(message=message, status__in=RETRYABLE_STATUSES), user)
    return sum(delivery_retry(delivery, actor=user) for delivery in failed)


def message_upcoming(message: ScheduledMessage, *, count: int) -> list[PreviewRow]:
    """The next occurrences of a pending message (one due a moment ago included); none
    for a completed or cancelled one."""
    if message.status not in EDITABLE_STATUSES:
        return []
    now = timezone.now()
    after = min(now, message.next_run_at or now) - timedelta(microseconds=1)
    return message_preview(message, count=count, after=after)


def draft_upcoming(data: dict, *, count: int) -> tuple[str, list[PreviewRow]]:
    """The occurrences a draft would have, checked as at creation; nothing is saved."""
    patient = data["patient"]
    timing_field = _timing_field(data)
    zone = data.get("timezone") or ""
    try:
        starts_at, rule = message_timing(
            MessageRequest(
                patient=patient,
                timezone=zone,
                scheduled_time=data.get("scheduled_time"),
                schedule=data.get("schedule"),
                recurrence=data.get("recurrence"),
            )
        )
        draft = ScheduledMessage(
            patient=patient,
            organization_id=patient.organization_id,
            starts_at=starts_at.replace(microsecond=0),
            recurrence=rule,
            timezone=zone,
            priority=data.get("priority", 3),
            ignore_quiet_hours=data.get("quiet_hours_override", False),
        )
        draft.clean()
        validate_recurrence(draft)
        now = timezone.now()
        message_plan_next(draft, now=now)
        if draft.status == MessageStatus.COMPLETED:
            raise ValidationError({"starts_at": NO_OCCURRENCE})
    except ValidationError as error:
        raise api_error(error, timing_field=timing_field) from error
    except OverflowError as error:
        raise ValidationError({timing_field: "The schedule runs out of range."}) from error
    after = min(now, draft.next_run_at) - timedelta(microseconds=1)
    return draft.zone_name, message_preview(draft, count=count, after=after)


@dataclass
class BulkOutcome:
    created: list[ScheduledMessage] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)  # [{"index": i, "errors": {...}}]


@transaction.atomic
def messages_bulk(
    *, create: list[tuple[int, dict]], cancel: list[ScheduledMessage], errors: list[dict], actor
) -> BulkOutcome:
    """All or nothing: every item is tried, so the answer lists every problem, and then
    everything is rolled back if any item (here or in `errors`, found earlier) failed."""
    outcome = BulkOutcome(errors=list(errors))
    for index, data in create:
        try:
            with transaction.atomic():  # a savepoint: the next items still run cleanly
                outcome.created.append(message_create_checked(data))
        except ValidationError as error:
            outcome.errors.append({"index": index, "errors": error.message_dict})
    for message in cancel:
        if message.pk not in outcome.cancelled:  # an id listed twice is cancelled once
            message_cancel_by(message, actor=actor)
            outcome.cancelled.append(message.pk)
    if outcome.errors:
        transaction.set_rollback(True)
        outcome.created, outcome.cancelled = [], []
        outcome.errors.sort(key=lambda item: item["index"])
    return outcome


# --- Patients ---------------------------------------------------------------------------


@transaction.atomic
def patient_save(patient: Patient, fields: dict, *, contacts: list[dict] | None, actor) -> Patient:
    """Creates or changes a patient; `contacts`, when given, replaces their contacts (a
    contact left out is removed, which only an admin of the organization may do: else
    PermissionDenied and nothing is saved). A new time zone or quiet hours reschedule
    their pending messages, as in the admin."""
    before = None
    if patient.pk is not None:
        before = (patient.timezone, patient.quiet_hours_start, patient.quiet_hours_end)
    for name, value in fields.items():
        setattr(patient, name, value)
    patient.save()
    if contacts is not None:
        _contacts_replace(patient, contacts, actor=actor)
    if before is not None and before != (
        patient.timezone,
        patient.quiet_hours_start,
        patient.quiet_hours_end,
    ):
        patient_reschedule(patient, previous_zone=before[0])
    return patient


def _contacts_replace(patient: Patient, wanted: list[dict], *, actor) -> None:
    """Contacts kept by channel and address, so their blocked state, verification and
    history stay; a new address is a new, unverified contact."""
    existing = {(c.channel, c.address): c for c in patient.contacts.all()}
    listed = {(item["channel"], item["address"]) for item in wanted}
    left_out = [contact for key, contact in existing.items() if key not in listed]
    if left_out and not may_delete(actor, patient):
        # As in the admin, removing a contact is for the clinic's admins. Only what is
        # removed here is checked: a contact added meanwhile was not read, so it stays.
        named = ", ".join(f"{c.channel} contact {c.pk}" for c in left_out)
        raise PermissionDenied(
            "Only an admin of the organization may remove a patient's contacts; this list "
            f"leaves out {named}. List every current contact to keep it."
        )
    for item in wanted:
        key = (item["channel"], item["address"])
        contact = existing.pop(key, None) or Contact(
            patient=patient, channel=key[0], address=key[1]
        )
        if item.get("verified_at") is False:  # `verified`: false clears it, true only keeps it
            contact_unverify(contact)
        contact.save()
    for contact in existing.values():
        contact.delete()


def patient_deactivate(patient: Patient, *, actor) -> None:
    """The API's delete (scheduling.services.patient_deactivate)."""
    deactivate(patient, actor=actor, reason=f"cancelled through the API by user {actor.pk}")


# --- Templates --------------------------------------------------------------------------


def visible_templates(user) -> QuerySet[MessageTemplate]:
    """The user's organizations' templates and the global rows (which every clinic reads)."""
    own = scoped(MessageTemplate.objects.all(), user)
    return MessageTemplate.objects.filter(
        Q(pk__in=own.values("pk")) | Q(organization__isnull=True)
    ).select_related("organization")


def template_catalogue(user, *, key: str = "", language: str = "") -> list[MessageTemplate]:
    """Every template the user's messages may use: their organizations' rows, the global
    rows, then the built-in defaults (unsaved, so without an id)."""
    rows = visible_templates(user).order_by(
        "organization__slug", "key", "language"
    )  # global rows (no organization) sort last in PostgreSQL
    builtins = [
        MessageTemplate(key=k, language=lang, body=body)
        for (k, lang), body in default_templates().items()
    ]
    wanted = [*rows, *builtins]
    return [
        t
        for t in wanted
        if (not key or t.key == key) and (not language or t.language == language.lower())
    ]
