"""An index of delivery attempts by finished_at, for the alert rules' failure rate (the
attempts of the last 15 minutes, every minute). Built CONCURRENTLY: on a table of
millions of attempts a plain CREATE INDEX would hold up every send while it runs."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("scheduling", "0017_delivery_sent_idx"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="deliveryattempt",
            index=models.Index(fields=["finished_at"], name="attempt_finished_idx"),
        ),
    ]
