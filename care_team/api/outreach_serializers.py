"""The companion's follow-ups in the API: a patient's history, one planned by hand, and
the patient's follow-up switch."""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from outreach.models import CheckIn, CheckInPlan, FollowUp
from outreach.plans import fill_in_coordinates


class StrictBooleanField(serializers.BooleanField):
    """true or false as JSON booleans: "off", 0 or "yes" are refused, not guessed."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            raise serializers.ValidationError("Must be true or false.")
        return data


@extend_schema_field(
    {"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$", "example": "08:30"}
)
class LocalTimeField(serializers.TimeField):
    """A wall-clock time in the patient's own zone: no UTC offset, so not OpenAPI's
    `time` format (which requires one)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(format="%H:%M", **kwargs)


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


class CheckInPlanSerializer(serializers.ModelSerializer):
    """The patient's daily check-in. A `place_name` without coordinates is looked up once
    (only the name leaves) and stored as coordinates; none found is a 400."""

    enabled = StrictBooleanField(required=False)
    local_time = LocalTimeField(required=False, help_text="Preferred local time, e.g. 08:30.")
    next_at = serializers.DateTimeField(read_only=True, allow_null=True)
    stopped_reason = serializers.CharField(read_only=True)

    class Meta:
        model = CheckInPlan
        fields = [
            "enabled",
            "local_time",
            "window_minutes",
            "place_name",
            "latitude",
            "longitude",
            "next_at",
            "stopped_reason",
        ]

    def validate(self, data):
        problem = fill_in_coordinates(data)
        if problem:
            raise serializers.ValidationError({"place_name": problem})
        if (data.get("latitude") is None) != (data.get("longitude") is None):
            raise serializers.ValidationError("Give both latitude and longitude, or neither.")
        return data


class CheckInSerializer(serializers.ModelSerializer):
    source = serializers.CharField(
        read_only=True, help_text='"llm" or "fallback"; empty while it is being written.'
    )

    class Meta:
        model = CheckIn
        fields = [
            "id",
            "local_date",
            "due_at",
            "status",
            "source",
            "fallback_reason",
            "with_weather",
            "with_context",
            "model",
            "latency_ms",
        ]
        read_only_fields = fields
