from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from care_team.api import docs, jobs, operator_views, views

router = DefaultRouter()
router.include_format_suffixes = False
router.register("patients", views.PatientViewSet, basename="api-patient")
router.register("messages", views.MessageViewSet, basename="api-message")
router.register("templates", views.TemplateViewSet, basename="api-template")
# Before "jobs": the router would otherwise read "runs" as a job's id.
router.register("jobs/runs", jobs.JobRunViewSet, basename="api-job-run")
router.register("jobs", jobs.JobViewSet, basename="api-job")

urlpatterns = [
    path("health/", views.HealthView.as_view(), name="api-health"),
    path("status/", operator_views.SchedulerStatusView.as_view(), name="api-scheduler-status"),
    path("reports/daily.csv", operator_views.DailyReportCsvView.as_view(), name="api-daily-report"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", docs.swagger_docs, name="api-docs"),
    path("docs/redoc/", docs.redoc_docs, name="api-redoc"),
    path("", include(router.urls)),
    re_path(r"", views.NotFoundView.as_view()),  # last: whatever nothing above matched
]
