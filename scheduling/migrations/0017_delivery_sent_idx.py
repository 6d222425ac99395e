"""An index of sent deliveries by sent_at, for the operators' status page (the latest
send, sends per minute). Built CONCURRENTLY: on a table of millions of deliveries a plain
CREATE INDEX would hold up every send while it runs."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("scheduling", "0016_attachments"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="delivery",
            index=models.Index(
                condition=models.Q(("status", "sent")),
                fields=["sent_at"],
                name="delivery_sent_idx",
            ),
        ),
    ]
