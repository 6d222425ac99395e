from django.conf import settings
from django.db import migrations


def create_states(apps, schema_editor):
    # Every patient already there is looked at first once quiet for the default delay.
    hours = float(settings.FOLLOW_UP_DEFAULT_DELAY_HOURS)
    schema_editor.execute(
        "INSERT INTO outreach_followupstate (patient_id, enabled, next_at, updated_at) "
        "SELECT p.id, true, COALESCE(p.last_interaction_at, p.created_at) "
        "+ %s * interval '1 hour', now() FROM patients_patient p "
        "ON CONFLICT (patient_id) DO NOTHING",
        [hours],
    )


class Migration(migrations.Migration):
    dependencies = [("outreach", "0001_initial")]

    operations = [migrations.RunPython(create_states, migrations.RunPython.noop)]
