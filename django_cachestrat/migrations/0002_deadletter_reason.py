from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_cachestrat", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="deadletter",
            name="reason",
            field=models.CharField(blank=True, default="", max_length=255),
        ),
    ]
