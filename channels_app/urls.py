from django.urls import path

from channels_app import views

app_name = "sandbox"
urlpatterns = [path("", views.sandbox_outbox, name="outbox")]
