from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("testapp", "0002_club_comment_membership_club_members"),
    ]

    operations = [
        migrations.AddField(
            model_name="place",
            name="visits",
            field=models.IntegerField(default=0),
        ),
    ]
