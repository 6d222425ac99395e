from auditlog.registry import auditlog
from django.db import models

from patients.models import Channel, Patient


class SandboxMessage(models.Model):
    """What a development stack without provider credentials would have sent."""

    channel = models.CharField(max_length=16, choices=Channel.choices)
    address = models.CharField(max_length=255)
    delivery_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    text = models.TextField()
    parse_mode = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Sandbox {self.channel} message #{self.pk}"


class InboxMessage(models.Model):
    """A message in a patient's web inbox, the channel that always reaches them."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="inbox")
    delivery_id = models.BigIntegerField(null=True, blank=True, unique=True)
    body = models.TextField()
    format = models.CharField(max_length=8, default="text")
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["patient", "-created_at"])]

    def __str__(self) -> str:
        return f"Inbox message #{self.pk}"


class MessageTemplate(models.Model):
    """A reminder written once, per organization and language, with {named} parameters.

    Rows without an organization are the global defaults every clinic starts from.
    """

    organization = models.ForeignKey(
        "patients.Organization", on_delete=models.CASCADE, null=True, blank=True,
        related_name="templates", help_text="Empty: a global default.",
    )  # fmt: skip
    key = models.SlugField(max_length=64, help_text="e.g. medication_reminder")
    language = models.CharField(max_length=16, help_text="e.g. en, de, pt-br")
    body = models.TextField(help_text="Text with {name}-style parameters.")
    format = models.CharField(max_length=8, default="text", choices=[("text", "Plain text"),
                                                                     ("html", "HTML")])  # fmt: skip
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key", "language"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "key", "language"], name="template_unique_per_org",
                nulls_distinct=False,
            )
        ]  # fmt: skip

    def __str__(self) -> str:
        return f"{self.key} ({self.language})"

    def clean(self) -> None:
        from channels_app.message_templates import template_parameters

        template_parameters(self.body)  # raises ValidationError naming a bad parameter


auditlog.register(MessageTemplate, exclude_fields=["updated_at"])
