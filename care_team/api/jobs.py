"""/api/scheduler/jobs/: the system's jobs for operators. Custom jobs (operations.job_types)
scheduled once, every N seconds or on a crontab; the job types and their payload
schemas; the history of every job's runs."""

from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from care_team.api.framework import AuditActorMixin, Pagination, StrictModelSerializer
from operations import job_types, scheduled_jobs
from operations.models import JobOutcome, JobRun, ScheduledJob
from patients.access import is_operator


class OperatorsOnly(BasePermission):
    """The system's jobs span every organization: operators (superusers) only."""

    message = "Only operators may see or schedule the system's jobs."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and is_operator(request.user))


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


# Every operation, reading too, answers 403 to anyone but an operator.
OPERATORS_ONLY = {403: OpenApiResponse(ErrorSerializer, description="Not an operator.")}


class ScheduledJobSerializer(StrictModelSerializer):
    payload = serializers.JSONField(required=False, default=dict)
    runs = serializers.SerializerMethodField()

    class Meta:
        model = ScheduledJob
        fields = [
            "id",
            "name",
            "job_type",
            "payload",
            "run_at",
            "every_seconds",
            "crontab",
            "max_retries",
            "enabled",
            "runs",
            "created_at",
        ]
        read_only_fields = ["created_at"]

    def get_runs(self, job: ScheduledJob) -> str:
        return scheduled_jobs.next_runs(job)

    def save(self, **kwargs) -> ScheduledJob:
        job = self.instance or ScheduledJob()
        for name, value in {**self.validated_data, **kwargs}.items():
            setattr(job, name, value)
        # The service checks the whole job (payload against its schema, one schedule) and
        # raises a ValidationError naming each bad field: a 400, nothing saved.
        self.instance = scheduled_jobs.scheduled_job_save(job, actor=self.context["request"].user)
        return self.instance


class JobRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobRun
        fields = [
            "id",
            "job",
            "started_at",
            "finished_at",
            "duration_ms",
            "outcome",
            "runs",
            "result",
            "error",
        ]


@extend_schema_view(
    list=extend_schema(responses={200: ScheduledJobSerializer(many=True), **OPERATORS_ONLY}),
    create=extend_schema(responses={201: ScheduledJobSerializer, **OPERATORS_ONLY}),
    retrieve=extend_schema(responses={200: ScheduledJobSerializer, **OPERATORS_ONLY}),
    update=extend_schema(responses={200: ScheduledJobSerializer, **OPERATORS_ONLY}),
    partial_update=extend_schema(responses={200: ScheduledJobSerializer, **OPERATORS_ONLY}),
    destroy=extend_schema(responses={204: None, **OPERATORS_ONLY}),
)
class JobViewSet(AuditActorMixin, viewsets.ModelViewSet):
    """Custom jobs. POST with `job_type`, `payload` (checked against the type's schema; a
    400 names the wrong field, e.g. `payload.kinds[0]`), and one of `run_at` (once),
    `every_seconds` or `crontab` ("minute hour day month weekday", UTC)."""

    serializer_class = ScheduledJobSerializer
    permission_classes = [OperatorsOnly]
    pagination_class = Pagination
    queryset = ScheduledJob.objects.select_related("periodic_task")

    def perform_destroy(self, instance: ScheduledJob) -> None:
        scheduled_jobs.scheduled_job_delete(instance)

    @extend_schema(
        summary="The job types and their payload schemas",
        responses={200: OpenApiTypes.OBJECT, **OPERATORS_ONLY},
    )
    @action(detail=False, methods=["get"])
    def types(self, request):
        return Response(
            {
                name: {"description": kind.description, "schema": kind.schema}
                for name, kind in job_types.registered().items()
            }
        )


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("job", str, description="One job's runs, by its name."),
            OpenApiParameter("outcome", str, enum=list(JobOutcome.values)),
        ],
        responses={200: JobRunSerializer(many=True), **OPERATORS_ONLY},
    )
)
class JobRunViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Every system job's runs, newest first; ?job=<name>&outcome=ok|failed|retrying."""

    serializer_class = JobRunSerializer
    permission_classes = [OperatorsOnly]
    pagination_class = Pagination

    def get_queryset(self):
        runs = JobRun.objects.all()
        if job := self.request.query_params.get("job"):
            runs = runs.filter(job=job)
        if outcome := self.request.query_params.get("outcome"):
            if outcome not in JobOutcome.values:
                raise ValidationError({"outcome": f"One of {', '.join(JobOutcome.values)}."})
            runs = runs.filter(outcome=outcome)
        return runs
