from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from care_team.login_security import SignInForm
from care_team.web import views

app_name = "scheduled_messages"
urlpatterns = [
    path("", views.message_list, name="list"),
    path("new/", views.message_new, name="create"),
    path("preview/", views.occurrence_preview, name="preview"),
    path("activity/", views.delivery_chart, name="chart"),
    path("<int:pk>/", views.message_detail, name="detail"),
    path("<int:pk>/cancel/", views.message_cancel_view, name="cancel"),
    path("<int:pk>/send-now/", views.message_send_now_view, name="send_now"),
    path("<int:pk>/follow-up/", views.patient_follow_up_view, name="follow_up"),
    path("language/", views.provider_language_view, name="language"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="care_team/web/login.html",
            authentication_form=SignInForm,
            next_page=reverse_lazy("scheduled_messages:list"),
        ),
        name="login",
    ),
    path(
        "logout/",
        auth_views.LogoutView.as_view(next_page=reverse_lazy("scheduled_messages:login")),
        name="logout",
    ),
]
