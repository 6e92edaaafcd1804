import uuid

from django.db import migrations, models


def fill_uids(apps, schema_editor):
    TrainingJob = apps.get_model("models_mgmt", "TrainingJob")
    for job in TrainingJob.objects.filter(uid__isnull=True).only("pk"):
        TrainingJob.objects.filter(pk=job.pk).update(uid=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [("models_mgmt", "0004_reaper_schedule")]

    operations = [
        migrations.AddField(model_name="trainingjob", name="uid", field=models.UUIDField(null=True, editable=False)),
        migrations.RunPython(fill_uids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="trainingjob",
            name="uid",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
    ]
