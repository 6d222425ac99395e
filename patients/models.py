import re
import zoneinfo

from auditlog.registry import auditlog
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from patients.encryption import address_hash
from patients.fields import BlindIndexField, EncryptedJSONField, EncryptedTextField


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(
            f"{value!r} is not an IANA time zone (for example Europe/Berlin or America/New_York)"
        )


class Channel(models.TextChoices):
    TELEGRAM = "telegram", "Telegram"
    WHATSAPP = "whatsapp", "WhatsApp"
    SMS = "sms", "SMS"
    EMAIL = "email", _("E-mail")
    WEB = "web", _("Web inbox")


E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def validate_address(channel: str, address: str) -> None:
    """An address the channel can use: a chat id, an E.164 number, an e-mail address."""
    if channel == Channel.TELEGRAM and not re.fullmatch(r"-?\d{1,20}", address):
        raise ValidationError({"address": "A Telegram chat id is a number, e.g. 123456789."})
    if channel in (Channel.SMS, Channel.WHATSAPP) and not E164.fullmatch(address):
        raise ValidationError(
            {"address": f"{address!r} is not an E.164 phone number (e.g. +4915112345678)."}
        )
    if channel == Channel.EMAIL:
        try:
            validate_email(address)
        except ValidationError as exc:
            raise ValidationError({"address": f"{address!r} is not an e-mail address."}) from exc


class Organization(models.Model):
    """A clinic or care team; every patient and message belongs to exactly one."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    alert_channel = models.CharField(
        max_length=16,
        blank=True,
        choices=[(c.value, c.label) for c in Channel if c != Channel.WEB],
        help_text="Where the care team is told about missed doses; empty: not told.",
    )
    alert_address = models.CharField(
        max_length=255, blank=True, help_text="A chat id, phone number or e-mail address."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if bool(self.alert_channel) != bool(self.alert_address.strip()):
            raise ValidationError({"alert_address": "Give both an alert channel and address."})
        if self.alert_channel:
            try:
                validate_address(self.alert_channel, self.alert_address.strip())
            except ValidationError as error:
                raise ValidationError({"alert_address": error.messages}) from error


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    STAFF = "staff", "Staff"


class Membership(models.Model):
    """A provider user's place in an organization; every surface scopes to these."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.STAFF)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="membership_once")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


class Patient(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="patients"
    )
    name = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    language = models.CharField(max_length=16, default="en")
    preferred_channel = models.CharField(
        max_length=16, choices=Channel.choices, default=Channel.TELEGRAM
    )
    onboarding_done = models.BooleanField(default=False)
    opted_out_at = models.DateTimeField(null=True, blank=True)
    last_interaction_at = models.DateTimeField(
        null=True, blank=True, help_text="When the patient last wrote to us or pressed a button."
    )
    quiet_hours_start = models.TimeField(
        null=True, blank=True, help_text="Local time from which nothing is sent, e.g. 22:00."
    )
    quiet_hours_end = models.TimeField(
        null=True, blank=True, help_text="Local time at which sending resumes, e.g. 07:00."
    )
    deactivated_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when the care team deactivated the patient."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["organization", "name"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(quiet_hours_start__isnull=True, quiet_hours_end__isnull=True)
                | (
                    Q(quiet_hours_start__isnull=False, quiet_hours_end__isnull=False)
                    & ~Q(quiet_hours_start=F("quiet_hours_end"))
                ),
                name="patient_quiet_hours_both_or_neither",
            )
        ]

    def __str__(self) -> str:
        # Admin pages are for the care team, who may see names; logs use ids.
        return self.name

    def clean(self) -> None:
        start, end = self.quiet_hours_start, self.quiet_hours_end
        if (start is None) != (end is None):
            raise ValidationError({"quiet_hours_end": "Give both ends of quiet hours, or none."})
        if start is not None and start == end:
            raise ValidationError({"quiet_hours_end": "Quiet hours must end at another time."})

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class VerifiedVia(models.TextChoices):
    TELEGRAM_LINK = "telegram_link", "The patient opened their Telegram link"
    CARE_TEAM = "care_team", "Confirmed by the care team"


class ContactQuerySet(models.QuerySet):
    def at(self, channel: str, address: str) -> "ContactQuerySet":
        """The contacts at an address, found by its keyed hash (the address is encrypted)."""
        return self.filter(channel=channel, address_hash=address_hash(channel, address))


class Contact(models.Model):
    """Where a patient can be reached on one channel: a Telegram chat id, a phone number.

    Messages go only to a verified contact (patients.contacts says how one becomes
    verified). The same address may belong to patients of several organizations: a
    clinic never learns that another one has it."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="contacts")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    # Encrypted at rest; found by its keyed hash (patients/encryption.py).
    address = EncryptedTextField(max_length=255)
    address_hash = BlindIndexField(of=("channel", "address"))
    verified_at = models.DateTimeField(null=True, blank=True)
    verified_via = models.CharField(max_length=16, choices=VerifiedVia.choices, blank=True)
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who in the care team confirmed it.",
    )
    blocked_at = models.DateTimeField(null=True, blank=True)
    blocked_reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ContactQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "channel", "address_hash"], name="contact_unique_per_patient"
            )
        ]
        indexes = [
            models.Index(fields=["patient", "channel"]),
            models.Index(fields=["channel", "address_hash"], name="contact_address_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} contact #{self.pk}"

    def clean(self) -> None:
        if self.channel == Channel.WEB:
            raise ValidationError({"channel": "The web inbox needs no contact."})
        validate_address(self.channel, self.address.strip())


class LinkToken(models.Model):
    """A one-time link that connects a Telegram chat to a patient; only its hash is kept."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="link_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )  # fmt: skip
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    contact = models.ForeignKey(
        Contact, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    def __str__(self) -> str:
        return f"Link token #{self.pk}"


class InboxLink(models.Model):
    """The patient's web inbox link (patients.inbox_links): a random secret of which only
    the hash is kept; it expires, and a newer link or a revocation ends it."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="inbox_links")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["patient"], name="inbox_link_live_idx", condition=Q(revoked_at__isnull=True)
            )
        ]

    def __str__(self) -> str:
        return f"Inbox link #{self.pk}"


class InboundUpdate(models.Model):
    """A patient's message or button press as a provider delivered it, stored before it is
    processed: none is lost when processing fails, and a re-delivered one (same id) is
    processed once. The payload is emptied once processed; it holds what the patient wrote."""

    channel = models.CharField(max_length=16, choices=Channel.choices)
    external_id = models.CharField(
        max_length=128, help_text="Telegram update_id, WhatsApp message id, Twilio MessageSid."
    )
    payload = EncryptedJSONField(default=dict, blank=True)  # encrypted at rest
    received_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_until = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=255, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "external_id"], name="inbound_update_once")
        ]
        indexes = [
            models.Index(
                fields=["received_at"],
                name="inbound_pending_idx",
                condition=Q(processed_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"Inbound {self.channel} update #{self.pk}"


auditlog.register(Patient, exclude_fields=["updated_at", "last_interaction_at"])
auditlog.register(
    Contact,
    exclude_fields=["address_hash"],
    mask_fields=["address"],
    mask_callable="patients.encryption.audit_mask",
)
auditlog.register(Membership)
