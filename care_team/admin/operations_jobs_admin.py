"""The system's jobs in the admin, for operators only: the history of every run (read
only) and the custom jobs they schedule (operations.job_types)."""

import json

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from operations import job_types, scheduled_jobs
from operations.models import JobRun, ScheduledJob
from patients.access import is_operator


class OperatorsOnly:
    """Every organization's system: nothing here is a clinic's to see."""

    def has_module_permission(self, request) -> bool:
        return is_operator(request.user)

    def has_view_permission(self, request, obj=None) -> bool:
        return is_operator(request.user)

    def has_add_permission(self, request) -> bool:
        return is_operator(request.user)

    def has_change_permission(self, request, obj=None) -> bool:
        return is_operator(request.user)

    def has_delete_permission(self, request, obj=None) -> bool:
        return is_operator(request.user)


@admin.register(JobRun)
class JobRunAdmin(OperatorsOnly, admin.ModelAdmin):
    list_display = ["job", "started_at", "duration_ms", "outcome", "runs", "result", "error"]
    list_filter = ["outcome", "job"]
    date_hierarchy = "started_at"
    show_full_result_count = False  # a count of a long history is a slow query

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # retention prunes it


class ScheduledJobForm(forms.ModelForm):
    job_type = forms.ChoiceField()
    payload = forms.JSONField(
        required=False,
        initial=dict,
        help_text="JSON, as the job type's schema asks (listed below the form).",
    )

    class Meta:
        model = ScheduledJob
        fields = [
            "name",
            "job_type",
            "payload",
            "run_at",
            "every_seconds",
            "crontab",
            "max_retries",
            "enabled",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["job_type"].choices = [(name, name) for name in job_types.registered()]
        schemas = "; ".join(
            f"{name}: {json.dumps(kind.schema)}" for name, kind in job_types.registered().items()
        )
        self.fields["job_type"].help_text = schemas

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        if cleaned.get("payload") is None:
            cleaned["payload"] = {}
        job = self.instance
        for name, value in cleaned.items():
            setattr(job, name, value)
        try:
            scheduled_jobs.validate_job(job)
        except ValidationError as error:
            for name, messages in error.message_dict.items():
                self.add_error(name if name in self.fields else None, messages)
        return cleaned


@admin.register(ScheduledJob)
class ScheduledJobAdmin(OperatorsOnly, admin.ModelAdmin):
    form = ScheduledJobForm
    list_display = ["name", "job_type", "when", "max_retries", "enabled", "created_at"]
    list_filter = ["job_type", "enabled"]
    readonly_fields = ["created_by", "created_at"]

    @admin.display(description="runs")
    def when(self, obj: ScheduledJob) -> str:
        return scheduled_jobs.next_runs(obj)

    def save_model(self, request, obj, form, change) -> None:
        scheduled_jobs.scheduled_job_save(obj, actor=request.user)

    def delete_model(self, request, obj) -> None:
        scheduled_jobs.scheduled_job_delete(obj)

    def delete_queryset(self, request, queryset) -> None:
        for job in queryset:
            scheduled_jobs.scheduled_job_delete(job)
