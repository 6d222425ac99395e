from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from channels_app import bot_views, callbacks
from channels_app import views as channel_views
from companion import views

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("healthz", views.liveness, name="liveness"),
    path("sandbox/", include("channels_app.urls")),
    path("ops/channels/", channel_views.channel_status, name="channel-status"),
    path("channels/twilio/status/", callbacks.twilio_status, name="twilio-status"),
    path("inbox/<str:token>/", channel_views.patient_inbox, name="patient-inbox"),
    path("api/scheduler/", include("scheduling.api.urls")),
    path("scheduled-messages/", include("scheduling.web.urls")),
    path("telegram/webhook/", bot_views.telegram_webhook, name="telegram-webhook"),
    path("channels/whatsapp/inbound/", bot_views.whatsapp_inbound, name="whatsapp-inbound"),
    path("channels/twilio/inbound/", bot_views.twilio_inbound, name="twilio-inbound"),
]
