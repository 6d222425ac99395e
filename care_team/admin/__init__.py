"""The Django admin for every app's models, scoped to the user's organizations.

Registered here, on top of the layers, because an admin page mixes what several layers
own (a patient's page shows their adherence and schedules' history); the models' own
apps stay free of any import from above. Admin URLs keep each model's app label.
"""

from care_team.admin import (
    channel_admin,
    message_admin,
    operations_admin,
    operations_jobs_admin,
    outreach_admin,
    patient_admin,
)

__all__ = [
    "channel_admin",
    "message_admin",
    "operations_admin",
    "operations_jobs_admin",
    "outreach_admin",
    "patient_admin",
]
