from django.db import migrations, models
from django.db.models import F


def mark_existing(apps, schema_editor):
    # Jobs queued before this column existed were handed to the broker when they were created.
    apps.get_model("models_mgmt", "TrainingJob").objects.filter(enqueued_at__isnull=True).update(
        enqueued_at=F("created_at")
    )


class Migration(migrations.Migration):
    dependencies = [("models_mgmt", "0007_monitoring")]

    operations = [
        migrations.AddField(
            model_name="trainingjob",
            name="enqueued_at",
            field=models.DateTimeField(blank=True, help_text="when the broker accepted its task", null=True),
        ),
        migrations.RunPython(mark_existing, migrations.RunPython.noop),
    ]
