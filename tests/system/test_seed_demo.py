from __future__ import annotations

from io import StringIO

from django.contrib.auth import get_user_model
from django.core.management import call_command

from models_mgmt.models import AIModel, AuditEvent, Bar, Dataset
from models_mgmt.permissions import has_model_perm


def test_seed_demo_is_idempotent_and_loads_real_data(transactional_db):
    out = StringIO()
    call_command("seed_demo", stdout=out)
    counts = (AIModel.objects.count(), Dataset.objects.count(), Bar.objects.count(), AuditEvent.objects.count())
    call_command("seed_demo", stdout=StringIO())
    assert (AIModel.objects.count(), Dataset.objects.count(), Bar.objects.count(), AuditEvent.objects.count()) == counts

    sp500 = Dataset.objects.get(name="sp500")
    assert sp500.bar_count == 5031 and str(sp500.first_date) == "1999-01-04" and str(sp500.last_date) == "2018-12-31"
    first = sp500.bars.order_by("timestamp").first()
    assert round(first.open, 2) == 1229.23  # the real first S&P 500 bar of 1999 shipped in arch

    users = get_user_model().objects
    model = AIModel.objects.get(name="techanal-signal")
    assert has_model_perm(users.get(username="analyst"), model, "view_aimodel")
    assert not has_model_perm(users.get(username="analyst"), model, "finetune_aimodel")
    assert has_model_perm(users.get(username="quant"), model, "finetune_aimodel")
    assert not has_model_perm(users.get(username="quant"), model, "activate_aimodel")
    assert has_model_perm(users.get(username="demo"), model, "activate_aimodel")
    assert users.get(username="admin").is_superuser
    assert "password 'techanal-demo'" in out.getvalue()
