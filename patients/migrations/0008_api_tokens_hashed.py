"""API tokens move from rest_framework.authtoken (kept in plain text) to django-rest-knox
(kept hashed, with an expiry). Each existing token keeps working, now stored as its
digest and expiring API_TOKEN_DAYS from today; the plain-text table is dropped."""

from datetime import timedelta

from django.conf import settings
from django.db import migrations


def hash_existing_tokens(apps, schema_editor) -> None:
    from django.utils import timezone
    from knox.crypto import hash_token
    from knox.settings import CONSTANTS

    connection = schema_editor.connection
    if "authtoken_token" not in connection.introspection.table_names():
        return
    AuthToken = apps.get_model("knox", "AuthToken")
    expiry = timezone.now() + timedelta(days=settings.API_TOKEN_DAYS)
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, user_id FROM authtoken_token")
        rows = cursor.fetchall()
        AuthToken.objects.bulk_create(
            AuthToken(
                digest=hash_token(key),
                token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH],
                user_id=user_id,
                expiry=expiry,
            )
            for key, user_id in rows
        )
        cursor.execute("DROP TABLE authtoken_token")
        cursor.execute("DELETE FROM django_migrations WHERE app = 'authtoken'")


class Migration(migrations.Migration):
    dependencies = [
        ("patients", "0007_inbox_links"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [migrations.RunPython(hash_existing_tokens, migrations.RunPython.noop)]
