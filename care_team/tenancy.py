"""The database's own wall between clinics for each care-team request (patients/tenant_wall.py).

A user signed in to the admin or the web UI gets it here; an API request authenticated
by its token gets it once DRF knows the user (care_team/api/views.py, ScopedViewSet).
Anonymous requests (webhooks, the patient's inbox, health) run without it.

Behind a pooler in transaction mode (DATABASE_POOLER=transaction) each request is one
transaction, so that the wall, set for the transaction only, covers all of it, the API's
too; it holds one server connection of the pool for the whole request.
"""

from django.conf import settings
from django.db import transaction

from patients.access import organization_ids
from patients.tenant_wall import wall_down, wall_up


class TenantWallMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if settings.DATABASE_POOLER == "transaction":
            with transaction.atomic():
                return self._walled(request)
        return self._walled(request)

    def _walled(self, request):
        wall_down()  # a connection kept from an earlier request starts as the plain user
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            wall_up(organization_ids(user))
        try:
            return self.get_response(request)
        finally:
            wall_down()
