import logging

from django.apps import AppConfig
from django.conf import settings
from django.db import connections
from django.db.models.signals import post_migrate


class ModelsMgmtConfig(AppConfig):
    name = "models_mgmt"
    verbose_name = "Model management"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_q.signals import post_spawn  # django-q2's signals import its models: only once apps are ready

        post_spawn.connect(_reap_on_worker_start, dispatch_uid="techanal-reap-on-spawn")
        post_migrate.connect(_schedules_follow_monitoring_cluster, sender=self, dispatch_uid="techanal-schedules")


def _schedules_follow_monitoring_cluster(sender: object, using: str = "default", **kwargs: object) -> None:
    """Migrations create the product's schedules without a cluster; MONITORING_CLUSTER places them."""
    from django_q.models import Schedule  # apps.py loads before models: import on use

    from models_mgmt.services.queue import schedules_follow_monitoring_cluster  # apps.py loads before models

    if Schedule._meta.db_table in connections[using].introspection.table_names():  # not after `migrate django_q zero`
        schedules_follow_monitoring_cluster(using=using)


def _reap_on_worker_start(sender: object, proc_name: str, **kwargs: object) -> None:
    """A worker that starts (or replaces a killed one) first looks for jobs whose worker is gone."""
    from models_mgmt.engine.warmup import warm_up  # apps.py loads before models: import on use
    from models_mgmt.training.reaper import training_jobs_reap  # apps.py loads before models: import on use

    try:
        for job_id, action in training_jobs_reap():
            logging.getLogger(__name__).warning("reaped training job %s: %s", job_id, action)
    except Exception:
        logging.getLogger(__name__).exception("reaping training jobs at worker start failed")
    if settings.TRAINING_WORKER_WARMUP:
        try:
            warm_up()  # the first job's progress feed is not silenced by one-time imports and ONNX init
        except Exception:
            logging.getLogger(__name__).exception("warming up the training worker failed")
