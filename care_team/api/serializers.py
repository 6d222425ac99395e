"""The shapes the API reads and writes. They check types and ranges; the scheduling
services (through `operations.py`) check what the input means and save it."""

from datetime import timedelta

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from care_team.api import operations
from care_team.api.framework import StrictCharField, StrictModelSerializer
from channels_app.attachments import KINDS, LIMITS
from patients.access import scoped
from patients.contacts import TAKEN_IN_ORGANIZATION, address_taken_in_organization
from patients.models import (
    Channel,
    Contact,
    Organization,
    Patient,
    VerifiedVia,
    validate_address,
    validate_timezone,
)
from scheduling.models import (
    ContentFormat,
    Delivery,
    DeliveryAttempt,
    MessageTemplate,
    ScheduledMessage,
)
from scheduling.template_syntax import template_parameters

NOT_FOUND = "Not found."
UNVERIFIED_BY_API = (
    "`verified` cannot be set here: a contact is verified when the patient links Telegram, "
    "or when the care team confirms it (POST /api/scheduler/patients/{id}/contacts/"
    "{contact_id}/confirm/)."
)
MAX_CONTENT_LENGTH = 100_000  # the most any channel takes (e-mail, web inbox)
MAX_PHRASE_LENGTH = 500
MAX_WINDOW_SECONDS = 30 * 24 * 3600
MAX_YEARS_AHEAD = 10
MAX_PREVIEW_COUNT = 50
MAX_BULK_ITEMS = 500
MAX_ID = 2**63 - 1  # bigint: a larger id cannot exist
# The largest file any channel takes (WhatsApp's documents); each channel's own limit is
# checked when the message is created, once its channel is known.
MAX_ATTACHMENT_BYTES = max(limit.max_bytes for kinds in LIMITS.values() for limit in kinds.values())


def _field_errors(error: DjangoValidationError) -> serializers.ValidationError:
    return serializers.ValidationError(serializers.as_serializer_error(error))


class _UserScoped:
    """A related object the requesting user may see. Any other reads "Not found.", the
    same as one that does not exist, so another organization's ids reveal nothing."""

    def get_queryset(self):
        return scoped(super().get_queryset(), self.context["request"].user)


class ScopedIdField(_UserScoped, serializers.PrimaryKeyRelatedField):
    default_error_messages = {
        "does_not_exist": NOT_FOUND,
        "incorrect_type": "Expected an id (a whole number).",
    }

    def __init__(self, **kwargs) -> None:
        super().__init__(pk_field=serializers.IntegerField(min_value=1, max_value=MAX_ID), **kwargs)

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as error:
            if any(detail.code in ("min_value", "max_value") for detail in error.detail):
                self.fail("does_not_exist")  # id 0, -5 or 10**30: simply not found
            raise


class ScopedSlugField(_UserScoped, serializers.SlugRelatedField):
    """An organization by its slug (as `create_provider` names it)."""

    default_error_messages = {"does_not_exist": NOT_FOUND, "invalid": "Expected a slug."}

    def __init__(self, **kwargs) -> None:
        super().__init__(slug_field="slug", **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str) or "\x00" in data:
            self.fail("invalid")
        return super().to_internal_value(data)


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 time with its UTC offset: a bare local time is ambiguous here, since
    the patient, the care team and the server may each be in another zone."""

    default_error_messages = {
        "naive": "Give the time with its UTC offset, e.g. 2030-04-15T09:00:00+02:00."
    }

    def enforce_timezone(self, value):
        if timezone.is_naive(value):
            self.fail("naive")
        return super().enforce_timezone(value)


class LocalDateTimeField(serializers.DateTimeField):
    """A time shown with its own offset (the message's zone), not converted to UTC."""

    def to_representation(self, value):
        return None if value is None else value.isoformat()


class IsSetField(serializers.BooleanField):
    """A timestamp shown as whether it is set: `verified` is `verified_at is not None`."""

    def get_attribute(self, instance) -> bool:
        # A bool, not the timestamp: DRF would show a None attribute as null.
        return super().get_attribute(instance) is not None

    def to_representation(self, value) -> bool:
        return bool(value)


@extend_schema_field(
    {"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$", "example": "22:00"}
)
class ClockTimeField(serializers.TimeField):
    """A local wall-clock time to the minute, as quiet hours are: "22:00"."""

    default_error_messages = {"seconds": "Give hours and minutes only, e.g. 22:00."}

    def __init__(self, **kwargs) -> None:
        super().__init__(format="%H:%M", **kwargs)

    def to_internal_value(self, value):
        moment = super().to_internal_value(value)
        if moment.second or moment.microsecond:
            self.fail("seconds")
        return moment


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "maxLength": MAX_PHRASE_LENGTH},
            {"type": "object", "additionalProperties": True},
        ],
        "description": 'An RRULE line ("FREQ=DAILY;BYHOUR=8;BYMINUTE=0") or a JSON pattern '
        '({"type": "weekly", "days": [0, 2], "time": "08:00"}).',
    }
)
class RuleField(serializers.Field):
    default_error_messages = {
        "invalid": "Expected an RRULE line or a JSON pattern object.",
        "max_length": f"At most {MAX_PHRASE_LENGTH} characters.",
    }

    def to_internal_value(self, data):
        if isinstance(data, str):
            if len(data) > MAX_PHRASE_LENGTH:
                self.fail("max_length")
            return data
        if isinstance(data, dict):
            return data
        self.fail("invalid")

    def to_representation(self, value):
        return value


# --- Patients ---------------------------------------------------------------------------


class ContactSerializer(StrictModelSerializer):
    verified = IsSetField(
        source="verified_at",
        required=False,
        help_text="Set by verification alone: the patient linking Telegram, or the care team "
        "confirming the contact (POST .../contacts/{contact_id}/confirm/). Writing false "
        "clears it; true is accepted only for a contact verified already.",
    )
    verified_via = serializers.ChoiceField(
        choices=VerifiedVia.choices,
        allow_blank=True,
        read_only=True,
        help_text="How it was verified; empty when it is not, or was before this was kept.",
    )
    blocked = IsSetField(
        source="blocked_at",
        read_only=True,
        help_text="The patient blocked us there (set by the channel).",
    )
    channel = serializers.ChoiceField(choices=[c for c in Channel.choices if c[0] != Channel.WEB])

    class Meta:
        model = Contact
        fields = [
            "id",
            "channel",
            "address",
            "verified",
            "verified_at",
            "verified_via",
            "blocked",
            "blocked_at",
            "blocked_reason",
        ]
        read_only_fields = ["id", "verified_at", "verified_via", "blocked_at", "blocked_reason"]
        validators = []  # uniqueness is checked over the whole list, see PatientSerializer

    def validate(self, attrs):
        # A contacts list replaces the patient's contacts, so each item must be whole even
        # in a PATCH (where DRF's partial mode would otherwise let channel or address go).
        missing = {name: ["This field is required."] for name in ("channel", "address")
                   if name not in attrs}  # fmt: skip
        if missing:
            raise serializers.ValidationError(missing)
        attrs["address"] = attrs["address"].strip()
        try:
            validate_address(attrs["channel"], attrs["address"])
        except DjangoValidationError as error:
            raise _field_errors(error) from error
        return attrs


class PatientSerializer(StrictModelSerializer):
    organization = ScopedSlugField(
        queryset=Organization.objects.all(),
        required=False,
        help_text="Required only for a user in several organizations; else theirs.",
    )
    contacts = ContactSerializer(
        many=True,
        required=False,
        help_text="When given, replaces the patient's contacts (each kept by channel and "
        "address). Leaving a contact out removes it, which only an admin of the "
        "organization may do: for staff that is a 403 and nothing is saved.",
    )
    active = serializers.SerializerMethodField()
    quiet_hours_start = ClockTimeField(
        required=False, allow_null=True, help_text="Local time from which nothing is sent."
    )
    quiet_hours_end = ClockTimeField(
        required=False, allow_null=True, help_text="Local time at which sending resumes."
    )

    class Meta:
        model = Patient
        fields = [
            "id",
            "organization",
            "name",
            "timezone",
            "language",
            "preferred_channel",
            "onboarding_done",
            "quiet_hours_start",
            "quiet_hours_end",
            "active",
            "opted_out_at",
            "contacts",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["opted_out_at", "created_at", "updated_at"]

    def get_active(self, patient: Patient) -> bool:
        return patient.opted_out_at is None and patient.deactivated_at is None

    def validate_organization(self, organization: Organization) -> Organization:
        if self.instance is not None and organization.pk != self.instance.organization_id:
            raise serializers.ValidationError("A patient cannot move to another organization.")
        return organization

    def validate_contacts(self, contacts: list[dict]) -> list[dict]:
        keys = [(c["channel"], c["address"]) for c in contacts]
        if len(set(keys)) != len(keys):
            raise serializers.ValidationError("The same address is listed twice.")
        verified = set()
        if self.instance is not None:
            mine = self.instance.contacts.filter(verified_at__isnull=False)
            verified = set(mine.values_list("channel", "address"))
        for item in contacts:
            if (
                item.get("verified_at") is True
                and (item["channel"], item["address"]) not in verified
            ):
                raise serializers.ValidationError(UNVERIFIED_BY_API)
        return contacts

    def _check_addresses_free_in(self, organization_id: int, contacts: list[dict]) -> None:
        # Only the patient's own organization is looked at: an address another clinic's
        # patient has is accepted, so the answer reveals nothing about other clinics.
        patient_id = self.instance.pk if self.instance is not None else None
        for item in contacts:
            channel, address = item["channel"], item["address"]
            taken = address_taken_in_organization(
                organization_id=organization_id,
                channel=channel,
                address=address,
                patient_id=patient_id,
            )
            if taken:
                raise serializers.ValidationError(
                    {"contacts": [TAKEN_IN_ORGANIZATION.format(channel=channel)]}
                )

    def validate(self, attrs):
        current = self.instance
        probe = Patient(
            quiet_hours_start=attrs.get(
                "quiet_hours_start", getattr(current, "quiet_hours_start", None)
            ),
            quiet_hours_end=attrs.get("quiet_hours_end", getattr(current, "quiet_hours_end", None)),
        )
        try:
            probe.clean()
        except DjangoValidationError as error:
            raise _field_errors(error) from error
        if current is None:
            try:
                attrs["organization"] = operations.default_organization(
                    self.context["request"].user, attrs.get("organization")
                )
            except DjangoValidationError as error:
                raise _field_errors(error) from error
        if attrs.get("contacts"):
            organization_id = current.organization_id if current else attrs["organization"].pk
            self._check_addresses_free_in(organization_id, attrs["contacts"])
        return attrs

    def create(self, validated_data):
        return self._save(Patient(), validated_data)

    def update(self, instance, validated_data):
        validated_data.pop("organization", None)
        return self._save(instance, validated_data)

    def _save(self, patient: Patient, data: dict) -> Patient:
        contacts = data.pop("contacts", None)
        try:
            return operations.patient_save(
                patient, data, contacts=contacts, actor=self.context["request"].user
            )
        except IntegrityError as error:  # a concurrent request changed the contacts meanwhile
            raise serializers.ValidationError(
                {"contacts": ["The patient's contacts changed meanwhile; try again."]}
            ) from error


# --- Messages ---------------------------------------------------------------------------


class AttemptSerializer(StrictModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = [
            "number",
            "started_at",
            "finished_at",
            "outcome",
            "error_code",
            "error_text",
            "duration_ms",
        ]
        read_only_fields = fields


class DeliverySerializer(StrictModelSerializer):
    attempt_count = serializers.IntegerField(source="attempts", read_only=True)
    attempts = AttemptSerializer(source="attempt_log", many=True, read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "occurrence_at",
            "channel",
            "status",
            "attempt_count",
            "next_attempt_at",
            "expires_at",
            "sent_at",
            "provider_message_id",
            "provider_status",
            "provider_status_at",
            "error_code",
            "error_text",
            "created_at",
            "updated_at",
            "attempts",
        ]
        read_only_fields = fields


class MessageSerializer(StrictModelSerializer):
    organization = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    quiet_hours_override = serializers.BooleanField(source="ignore_quiet_hours", read_only=True)
    effective_timezone = StrictCharField(source="zone_name", read_only=True)

    class Meta:
        model = ScheduledMessage
        fields = [
            "id",
            "organization",
            "patient",
            "channel",
            "channel_fixed",
            "content",
            "format",
            "priority",
            "status",
            "status_reason",
            "starts_at",
            "next_run_at",
            "recurrence",
            "timezone",
            "effective_timezone",
            "quiet_hours_override",
            "delivery_window_seconds",
            "metadata",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
        extra_kwargs = {"timezone": {"help_text": "As given; empty means the patient's."}}


class MessageDetailSerializer(MessageSerializer):
    delivery_count = serializers.IntegerField(read_only=True)
    deliveries = DeliverySerializer(
        source="recent_deliveries",
        many=True,
        read_only=True,
        help_text=f"The {operations.DETAIL_DELIVERIES} latest, newest first, with attempts.",
    )

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "delivery_count", "deliveries"]
        read_only_fields = fields


class _TimingSerializer(serializers.Serializer):
    """When: exactly one of scheduled_time, schedule or recurrence (checked by the
    creation service, which names the field)."""

    patient = ScopedIdField(queryset=Patient.objects.all())
    scheduled_time = AwareDateTimeField(required=False, help_text="A one-time message.")
    schedule = StrictCharField(
        required=False,
        max_length=MAX_PHRASE_LENGTH,
        help_text='A phrase: "daily at 08:00", "every 2h", "tomorrow 15:30".',
    )
    recurrence = RuleField(required=False)
    timezone = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=64,
        validators=[validate_timezone],
        help_text="IANA zone; default the patient's.",
    )
    priority = serializers.IntegerField(required=False, default=3, min_value=1, max_value=5)
    quiet_hours_override = serializers.BooleanField(
        required=False, default=False, help_text="Send in quiet hours (priority 1 only)."
    )

    def validate_scheduled_time(self, value):
        if value > timezone.now() + timedelta(days=366 * MAX_YEARS_AHEAD):
            raise serializers.ValidationError(f"At most {MAX_YEARS_AHEAD} years ahead.")
        return value


class MessageCreateSerializer(_TimingSerializer):
    content = StrictCharField(required=False, max_length=MAX_CONTENT_LENGTH, trim_whitespace=False)
    format = serializers.ChoiceField(choices=ContentFormat.choices, default=ContentFormat.TEXT)
    template = serializers.SlugField(
        required=False, max_length=64, help_text="A template key, e.g. appointment_reminder."
    )
    parameters = serializers.DictField(
        child=StrictCharField(allow_blank=True, max_length=1000),
        required=False,
        help_text="The template's parameters; {name} comes from the patient.",
    )
    channel = serializers.ChoiceField(
        choices=Channel.choices,
        required=False,
        allow_null=True,
        help_text="Empty: follow the patient's channels.",
    )
    delivery_window_seconds = serializers.IntegerField(
        required=False, allow_null=True, min_value=60, max_value=MAX_WINDOW_SECONDS
    )
    attachment = serializers.FileField(
        required=False,
        help_text="A photo, voice note or document (multipart/form-data); each channel's "
        "size and type limits apply (README, Attachments).",
    )
    attachment_kind = serializers.ChoiceField(
        choices=KINDS,
        required=False,
        help_text="Default: from the file's type (image: photo, audio: voice, else document).",
    )

    def validate_attachment(self, upload):
        if upload.size > MAX_ATTACHMENT_BYTES:
            raise serializers.ValidationError(
                f"The file has {upload.size} bytes; no channel takes more than "
                f"{MAX_ATTACHMENT_BYTES} bytes (100 MB)."
            )
        return upload

    def create(self, validated_data) -> ScheduledMessage:
        return operations.message_create_checked(validated_data)


class MessageUpdateSerializer(serializers.Serializer):
    """What may change while a message is pending. Fields not given keep their values (for
    PUT too); a new time is read in the message's (possibly new) zone."""

    content = StrictCharField(required=False, max_length=MAX_CONTENT_LENGTH, trim_whitespace=False)
    format = serializers.ChoiceField(choices=ContentFormat.choices, required=False)
    priority = serializers.IntegerField(required=False, min_value=1, max_value=5)
    channel = serializers.ChoiceField(choices=Channel.choices, required=False, allow_null=True)
    timezone = StrictCharField(
        required=False, allow_blank=True, max_length=64, validators=[validate_timezone]
    )
    quiet_hours_override = serializers.BooleanField(required=False)
    delivery_window_seconds = serializers.IntegerField(
        required=False, min_value=60, max_value=MAX_WINDOW_SECONDS
    )
    scheduled_time = AwareDateTimeField(required=False)
    schedule = StrictCharField(required=False, max_length=MAX_PHRASE_LENGTH)
    recurrence = RuleField(required=False)

    validate_scheduled_time = _TimingSerializer.validate_scheduled_time

    def validate(self, attrs):
        timing = [name for name in operations.TIMING_FIELDS if name in attrs]
        if len(timing) > 1:
            raise serializers.ValidationError(
                {timing[1]: "Give at most one of scheduled_time, schedule or recurrence."}
            )
        return attrs

    def update(self, instance, validated_data) -> ScheduledMessage:
        return operations.message_update(instance, validated_data)


class MessageDraftSerializer(_TimingSerializer):
    """A draft's timing, previewed without saving anything (other fields are ignored)."""

    count = serializers.IntegerField(
        required=False, default=5, min_value=1, max_value=MAX_PREVIEW_COUNT
    )


class PreviewQuerySerializer(serializers.Serializer):
    count = serializers.IntegerField(
        required=False, default=5, min_value=1, max_value=MAX_PREVIEW_COUNT
    )


class OccurrenceSerializer(serializers.Serializer):
    local = LocalDateTimeField(help_text="When it is sent, in the message's zone.")
    utc = serializers.DateTimeField()
    moved_from_local = LocalDateTimeField(
        allow_null=True, help_text="The rule's time, when quiet hours moved it."
    )


class PreviewSerializer(serializers.Serializer):
    timezone = StrictCharField()
    occurrences = OccurrenceSerializer(many=True)


class RetryResultSerializer(serializers.Serializer):
    retried = serializers.IntegerField(help_text="Failed or expired deliveries queued again.")


class BulkRequestSerializer(serializers.Serializer):
    """Exactly one of the two lists; every item is checked, and nothing is saved unless
    all of them pass."""

    create = MessageCreateSerializer(many=True, required=False, max_length=MAX_BULK_ITEMS)
    cancel = serializers.ListField(
        child=serializers.IntegerField(), required=False, max_length=MAX_BULK_ITEMS
    )


class BulkEnvelopeSerializer(serializers.Serializer):
    """The envelope only: items are checked one by one, so each error carries its index."""

    create = serializers.ListField(
        child=serializers.JSONField(), required=False, max_length=MAX_BULK_ITEMS
    )
    cancel = serializers.ListField(
        child=serializers.JSONField(), required=False, max_length=MAX_BULK_ITEMS
    )

    def validate(self, attrs):
        if len(attrs) != 1 or not next(iter(attrs.values())):
            raise serializers.ValidationError("Give a non-empty list under create or cancel.")
        return attrs

    def checked_creates(self) -> tuple[list[tuple[int, dict]], list[dict]]:
        """The valid items (with their index) and the errors of the others."""
        valid, errors = [], []
        for index, item in enumerate(self.validated_data.get("create", [])):
            item_serializer = MessageCreateSerializer(data=item, context=self.context)
            if item_serializer.is_valid():
                valid.append((index, item_serializer.validated_data))
            else:
                errors.append({"index": index, "errors": item_serializer.errors})
        return valid, errors

    def checked_cancels(self) -> tuple[list[ScheduledMessage], list[dict]]:
        field = ScopedIdField(queryset=ScheduledMessage.objects.all())
        field.bind("cancel", self)
        valid, errors = [], []
        for index, item in enumerate(self.validated_data.get("cancel", [])):
            try:
                valid.append(field.to_internal_value(item))
            except serializers.ValidationError as error:
                errors.append({"index": index, "errors": {"id": error.detail}})
        return valid, errors


class BulkItemErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    errors = serializers.DictField(help_text="Field name: list of reasons, as for one item.")


class BulkErrorSerializer(serializers.Serializer):
    errors = BulkItemErrorSerializer(many=True)


class BulkResultSerializer(serializers.Serializer):
    created = MessageSerializer(many=True)
    cancelled = serializers.ListField(child=serializers.IntegerField())


# --- Templates --------------------------------------------------------------------------


class TemplateSerializer(StrictModelSerializer):
    organization = ScopedSlugField(
        queryset=Organization.objects.all(),
        allow_null=True,
        required=False,
        help_text="Write: required only for a user in several organizations. "
        "Read: null for global and built-in templates.",
    )
    language = serializers.RegexField(
        r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?\Z", max_length=16, help_text="e.g. en, de, pt-br"
    )
    body = StrictCharField(max_length=MAX_CONTENT_LENGTH, trim_whitespace=False)
    parameters = serializers.SerializerMethodField()
    builtin = serializers.SerializerMethodField()
    # Both null for the built-in defaults, which are not rows.
    id = serializers.IntegerField(read_only=True, allow_null=True)
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = MessageTemplate
        fields = [
            "id",
            "organization",
            "key",
            "language",
            "body",
            "format",
            "parameters",
            "builtin",
            "updated_at",
        ]
        validators = []  # uniqueness per organization is checked in validate()

    def get_parameters(self, template: MessageTemplate) -> list[str]:
        return sorted(template_parameters(template.body))

    def get_builtin(self, template: MessageTemplate) -> bool:
        return template.pk is None

    def validate_language(self, language: str) -> str:
        return language.lower()

    def validate_body(self, body: str) -> str:
        try:
            template_parameters(body)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.message_dict["body"]) from error
        return body

    def validate_organization(self, organization: Organization | None) -> Organization | None:
        if self.instance is None:
            return organization  # None: the user's only one, see validate()
        if getattr(organization, "pk", None) != self.instance.organization_id:
            raise serializers.ValidationError("A template cannot move to another organization.")
        return organization

    def validate(self, attrs):
        user = self.context["request"].user
        current = self.instance
        if current is None:
            try:
                attrs["organization"] = operations.default_organization(
                    user, attrs.get("organization")
                )
            except DjangoValidationError as error:
                raise _field_errors(error) from error
        organization = attrs.get("organization", getattr(current, "organization", None))
        key = attrs.get("key", getattr(current, "key", None))
        language = attrs.get("language", getattr(current, "language", None))
        same = scoped(MessageTemplate.objects.all(), user).filter(
            organization=organization, key=key, language=language
        )
        if current is not None:
            same = same.exclude(pk=current.pk)
        if same.exists():
            raise serializers.ValidationError(
                {"key": f"The organization already has {key!r} in {language!r}."}
            )
        return attrs

    def create(self, validated_data):
        return self._saved(MessageTemplate(**validated_data))

    def update(self, instance, validated_data):
        for name, value in validated_data.items():
            setattr(instance, name, value)
        return self._saved(instance)

    def _saved(self, template: MessageTemplate) -> MessageTemplate:
        try:
            with transaction.atomic():
                template.save()
        except IntegrityError as error:  # the same key and language, saved meanwhile
            raise serializers.ValidationError({"key": ["Already exists."]}) from error
        return template


# --- Health -----------------------------------------------------------------------------


class CheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    detail = StrictCharField()


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "failing"])
    failing = serializers.ListField(child=StrictCharField())
    checks = serializers.DictField(child=CheckSerializer())
    checked_at = serializers.DateTimeField(help_text="When the checks ran.")
    age_seconds = serializers.FloatField(
        help_text="How old the report is: it is kept for HEALTH_CACHE_SECONDS (5)."
    )


class TelegramLinkSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Shown once: only its hash is kept.")
    url = serializers.CharField(
        help_text="https://t.me/<bot>?start=<token>; empty without TELEGRAM_BOT_USERNAME."
    )
    expires_at = serializers.DateTimeField()
    qr_svg = serializers.CharField(help_text="The link as an SVG QR code.")
    qr_png = serializers.CharField(help_text="The link as a PNG QR code, base64.")
