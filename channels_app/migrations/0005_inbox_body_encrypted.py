import patients.fields
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('channels_app', '0004_message_template_moved_to_scheduling'),
    ]

    operations = [
        migrations.AlterField(
            model_name='inboxmessage',
            name='body',
            field=patients.fields.EncryptedTextField(),
        ),
    ]
