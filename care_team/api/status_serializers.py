"""What /api/scheduler/status/ answers, for the OpenAPI schema (the view builds the dict in
operations/status.py; these only describe it)."""

from rest_framework import serializers

from care_team.api.serializers import CheckSerializer, HealthSerializer


class BeatSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    last_tick_age_seconds = serializers.FloatField(allow_null=True)
    limit_seconds = serializers.FloatField()
    detail = serializers.CharField()


class SchedulerStatusSerializer(serializers.Serializer):
    generated_at = serializers.DateTimeField()
    health = HealthSerializer(help_text="The health endpoint's report, cached as it is.")
    beat = BeatSerializer(help_text="How long ago the dispatcher last ran.")
    workers = CheckSerializer(help_text="Celery workers answering a ping.")
    channels = serializers.DictField(
        help_text="Per channel: breaker, tasks in the broker's queue, queued and held "
        "deliveries, rate limits; with the held and queued totals and the open breakers. "
        "{'error': ...} when the database or Redis does not answer."
    )
    database_activity = serializers.DictField(
        help_text="Age of the last send, sends per minute over the last hour, the oldest "
        "queued and sending delivery, and per channel the failure rate of the last hour."
    )
    open_incidents = serializers.ListField(child=serializers.DictField())
    recent_job_runs = serializers.ListField(child=serializers.DictField())
