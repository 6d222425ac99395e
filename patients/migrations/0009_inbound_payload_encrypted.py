import patients.fields
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('patients', '0008_api_tokens_hashed'),
    ]

    operations = [
        migrations.AlterField(
            model_name='inboundupdate',
            name='payload',
            field=patients.fields.EncryptedJSONField(blank=True, default=dict),
        ),
    ]
