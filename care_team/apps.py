from django.apps import AppConfig


class CareTeamConfig(AppConfig):
    """What care teams and operators use: the admin, the REST API, the web UI, ops pages."""

    name = "care_team"
