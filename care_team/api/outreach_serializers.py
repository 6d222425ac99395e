"""The companion's follow-ups in the API: a patient's history, one planned by hand, and
the patient's follow-up switch."""

from datetime import timedelta

from django.utils import timezone
from rest_framework import serializers

from outreach.models import FollowUp


class StrictBooleanField(serializers.BooleanField):
    """true or false as JSON booleans: "off", 0 or "yes" are refused, not guessed."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            raise serializers.ValidationError("Must be true or false.")
        return data


class FollowUpSerializer(serializers.ModelSerializer):
    source = serializers.CharField(
        read_only=True, help_text='"llm" or "fallback"; empty until it is written.'
    )

    class Meta:
        model = FollowUp
        fields = [
            "id",
            "kind",
            "status",
            "due_at",
            "quiet_since",
            "source",
            "fallback_reason",
            "context_used",
            "sent_at",
            "responded_at",
            "created_at",
        ]
        read_only_fields = fields


class FollowUpRequestSerializer(serializers.Serializer):
    """When: `in_hours` from now (e.g. 24), or an `at` time; one of the two."""

    in_hours = serializers.FloatField(required=False, min_value=0, max_value=24 * 90)
    at = serializers.DateTimeField(required=False)

    def validate(self, data):
        if ("in_hours" in data) == ("at" in data):
            raise serializers.ValidationError("Give either in_hours or at.")
        if "in_hours" in data:
            data["at"] = timezone.now() + timedelta(hours=data.pop("in_hours"))
        return data


class FollowUpSettingsSerializer(serializers.Serializer):
    enabled = StrictBooleanField(help_text="Follow-ups when the patient has gone quiet.")
