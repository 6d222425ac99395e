from django.apps import AppConfig


class CareTeamConfig(AppConfig):
    """What care teams and operators use: the admin, the REST API, the web UI, ops pages."""

    name = "care_team"

    def ready(self) -> None:
        from django.contrib import admin

        from care_team.login_security import AdminSignInForm

        # The admin's sign-in asks for the authenticator code too (login_security.py).
        admin.site.login_form = AdminSignInForm
        admin.site.login_template = "admin/care_team_login.html"
