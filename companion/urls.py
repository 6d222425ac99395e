from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from care_team import views as care_team_views
from companion import views
from conversations import callbacks, webhooks
from conversations import views as conversation_views

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("healthz", views.liveness, name="liveness"),
    path("metrics", views.metrics, name="metrics"),
    path("sandbox/", care_team_views.sandbox_outbox, name="sandbox-outbox"),
    path("ops/", care_team_views.control_panel, name="control-panel"),
    path(
        "ops/diagnostics/",
        care_team_views.control_panel_diagnostics,
        name="control-panel-diagnostics",
    ),
    path("ops/channels/", care_team_views.channel_status, name="channel-status"),
    path("channels/twilio/status/", callbacks.twilio_status, name="twilio-status"),
    path("inbox/<str:token>/", conversation_views.patient_inbox, name="patient-inbox"),
    path("inbox/<str:token>/read/", conversation_views.patient_inbox_read, name="inbox-read"),
    path(
        "inbox/<str:token>/attachments/<int:item_id>/",
        conversation_views.patient_inbox_attachment,
        name="inbox-attachment",
    ),
    path("media/<str:token>/", conversation_views.attachment_link, name="attachment-link"),
    path("api/scheduler/", include("care_team.api.urls")),
    path("scheduled-messages/", include("care_team.web.urls")),
    path("telegram/webhook/", webhooks.telegram_webhook, name="telegram-webhook"),
    path("channels/whatsapp/inbound/", webhooks.whatsapp_inbound, name="whatsapp-inbound"),
    path("channels/twilio/inbound/", webhooks.twilio_inbound, name="twilio-inbound"),
]
