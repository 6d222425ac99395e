from django.db import models

from patients.fields import EncryptedTextField
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
    body = EncryptedTextField()  # encrypted at rest (patients/encryption.py)
    format = models.CharField(max_length=8, default="text")
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["patient", "-created_at"])]

    def __str__(self) -> str:
        return f"Inbox message #{self.pk}"
