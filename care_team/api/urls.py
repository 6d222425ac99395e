from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from care_team.api import docs, operator_views, views

router = DefaultRouter()
router.include_format_suffixes = False
router.register("patients", views.PatientViewSet, basename="api-patient")
router.register("messages", views.MessageViewSet, basename="api-message")
router.register("templates", views.TemplateViewSet, basename="api-template")

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
