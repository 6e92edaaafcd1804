"""Django admin: every write goes through the same services as the API (atomic, permission-checked,
audited); what no service changes is read-only here, and internal bookkeeping (event `seq`) is never
editable. Access to a model is granted with the API's `models/:name/access` (audited), so guardian's
object-permission pages, which would write permissions unaudited, are not offered."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from models_mgmt.engine.families import FAMILIES
from models_mgmt.errors import InvalidInput
from models_mgmt.models import (
    AIModel,
    AuditEvent,
    Bar,
    BaseModel,
    Dataset,
    Experiment,
    GuardrailEvaluation,
    GuardrailPolicy,
    JobCost,
    ModelVersion,
    PriceCard,
    TrainingEpoch,
    TrainingJob,
)
from models_mgmt.services import ServiceError, ai_model_create, ai_model_delete, ai_model_update
from models_mgmt.services.ai_models import EDITABLE_FIELDS
from models_mgmt.services.experiments import experiment_stop
from models_mgmt.services.guardrails import POLICY_NUMBERS, guardrail_policy_update, guardrail_policy_validate
from models_mgmt.services.job_costs import price_card_create, price_card_validate


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only services or the worker write (versions, jobs, datasets, bars, audit): admin
    shows them, never adds, edits or deletes them (none of that would be audited)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AIModelForm(forms.ModelForm):
    family = forms.ChoiceField(choices=[(name, name) for name in FAMILIES])

    class Meta:
        model = AIModel
        fields = ("name", "family", "base_model", "description", "default_dataset")


@admin.register(AIModel)
class AIModelAdmin(admin.ModelAdmin):
    """Adds with ai_model_create, edits with ai_model_update (description, base model, default
    dataset; the name and family are the model's identity), deletes with ai_model_delete."""

    form = AIModelForm
    list_display = ("name", "family", "owner", "default_dataset", "created_at")
    list_filter = ("family",)
    search_fields = ("name", "description")
    identity = ("name", "family", "owner")
    internal = ("event_seq", "created_at", "updated_at")

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        if obj is None:
            return ("name", "family", "base_model", "description", "default_dataset")
        return (*self.identity, *EDITABLE_FIELDS, *self.internal)

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return () if obj is None else (*self.identity, *self.internal)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, each through ai_model_delete
        return actions

    def save_model(self, request: HttpRequest, obj: AIModel, form: forms.ModelForm, change: bool) -> None:
        if change:
            changes = {name: form.cleaned_data[name] for name in form.changed_data if name in EDITABLE_FIELDS}
            if changes:
                ai_model_update(actor=request.user, model=obj, changes=changes)
            return
        created = ai_model_create(
            actor=request.user,
            name=obj.name,
            family=obj.family,
            base_model=obj.base_model,
            description=obj.description,
            default_dataset=obj.default_dataset,
        )
        # The admin logs and redirects with the object its form built: make it the stored one.
        obj.pk, obj.owner, obj._state = created.pk, created.owner, created._state

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """Its versions, jobs and events go with the model (ai_model_delete), though admin may not
        delete them one by one: the service, not admin's per-row permissions, decides."""
        deleted, counts, _, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected

    def delete_model(self, request: HttpRequest, obj: AIModel) -> None:
        ai_model_delete(actor=request.user, model=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AIModel]) -> None:
        for model in queryset:
            ai_model_delete(actor=request.user, model=model)

    # A service refusing (a live job on delete, a missing permission) rolls back the admin's
    # transaction; the page says why instead of answering a server error.
    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().changeform_view(request, *args, **kwargs)
        except ServiceError as exc:
            return self._refused(request, exc)

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().delete_view(request, *args, **kwargs)
        except ServiceError as exc:
            return self._refused(request, exc)

    def _refused(self, request: HttpRequest, exc: ServiceError) -> HttpResponse:
        self.message_user(request, exc.message, messages.ERROR)
        return HttpResponseRedirect(request.get_full_path())


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("model", "version", "status", "accuracy", "response_time_ms", "trained_at")
    list_filter = ("status",)
    search_fields = ("model__name", "version")
    list_select_related = ("model",)


class TrainingEpochInline(admin.TabularInline):
    model = TrainingEpoch
    extra = 0
    can_delete = False
    readonly_fields = ("epoch", "train_loss", "val_loss", "metrics", "duration_s", "created_at")


@admin.register(TrainingJob)
class TrainingJobAdmin(ReadOnlyAdmin):
    list_display = ("id", "model", "status", "progress", "epoch", "total_epochs", "attempts", "device", "created_at")
    list_filter = ("status",)
    search_fields = ("model__name",)
    list_select_related = ("model",)
    inlines = [TrainingEpochInline]


@admin.register(Dataset)
class DatasetAdmin(ReadOnlyAdmin):
    """Uploaded (validated, all bars or none) and appended through the API and its services."""

    list_display = ("name", "symbol", "timeframe", "source", "bar_count", "first_date", "last_date")
    list_filter = ("source", "timeframe")


@admin.register(Bar)
class BarAdmin(ReadOnlyAdmin):
    list_display = ("dataset", "timestamp", "open", "high", "low", "close", "volume")
    list_filter = ("dataset",)
    date_hierarchy = "timestamp"


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor", "action", "object_type", "object_repr", "ai_model_name")
    list_filter = ("action", "object_type")
    search_fields = ("object_repr", "ai_model_name")


@admin.register(BaseModel)
class BaseModelAdmin(ReadOnlyAdmin):
    """llm-lora base models: registered through the API or `register_base_model`, which check the
    directory and record the sha256 of every file."""

    list_display = ("name", "ollama_tag", "architecture", "parameters", "path", "created_at")
    search_fields = ("name", "ollama_tag", "path")


# The policy's fields under their API names: the admin form is checked and saved by the same service.
POLICY_WIRE_NAMES = {"enabled": "enabled", "accuracy_tasks": "accuracyTasks"} | {
    field: name for name, (field, *_) in POLICY_NUMBERS.items()
}


class GuardrailPolicyForm(forms.ModelForm):
    class Meta:
        model = GuardrailPolicy
        fields = ("model", *POLICY_WIRE_NAMES)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        changes = {POLICY_WIRE_NAMES[f]: data[f] for f in POLICY_WIRE_NAMES if f in data}
        try:
            guardrail_policy_validate(self.instance, changes)
        except InvalidInput as exc:
            fields = {wire: field for field, wire in POLICY_WIRE_NAMES.items()}
            for name, problems in (exc.fields or {}).items():
                self.add_error(fields.get(name), problems)
        return data


@admin.register(GuardrailPolicy)
class GuardrailPolicyAdmin(admin.ModelAdmin):
    """Saved with guardrail_policy_update (validated, permission-checked, audited); the cooldown is
    set by a rollback (PUT guardrails {"cooldownUntil": null} ends it)."""

    form = GuardrailPolicyForm
    list_display = ("model", "enabled", "accuracy_margin", "latency_p95_ms", "latency_m", "latency_n", "cooldown_until")
    list_filter = ("enabled",)
    list_select_related = ("model",)
    readonly_fields = ("cooldown_until", "updated_at", "updated_by")

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return self.readonly_fields if obj is None else ("model", *self.readonly_fields)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # switch it off instead: the evaluations keep their history

    def save_model(self, request: HttpRequest, obj: GuardrailPolicy, form: forms.ModelForm, change: bool) -> None:
        fields = [f for f in POLICY_WIRE_NAMES if f in form.changed_data or not change]
        changes = {POLICY_WIRE_NAMES[f]: form.cleaned_data[f] for f in fields}
        saved = guardrail_policy_update(actor=request.user, model=obj.model, changes=changes)
        obj.pk, obj._state = saved.pk, saved._state

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().changeform_view(request, *args, **kwargs)
        except ServiceError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


@admin.register(GuardrailEvaluation)
class GuardrailEvaluationAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "model", "version", "trigger", "verdict", "action", "rolled_back_to")
    list_filter = ("verdict", "action", "trigger")
    search_fields = ("model__name",)
    list_select_related = ("model", "version", "rolled_back_to")


# The price card's fields under their API names: the admin form is checked by the service's rules.
PRICE_CARD_WIRE_NAMES = {"cpu_hour": "cpuHour", "gpu_hour": "gpuHour", "currency": "currency"}


class PriceCardForm(forms.ModelForm):
    class Meta:
        model = PriceCard
        fields = ("cpu_hour", "gpu_hour", "currency", "valid_from", "note")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if all(field in data for field in PRICE_CARD_WIRE_NAMES):
            try:
                price_card_validate(cpu_hour=data["cpu_hour"], gpu_hour=data["gpu_hour"], currency=data["currency"])
            except InvalidInput as exc:
                fields = {wire: field for field, wire in PRICE_CARD_WIRE_NAMES.items()}
                for name, problem in (exc.fields or {}).items():
                    self.add_error(fields.get(name), problem)
        return data


@admin.register(PriceCard)
class PriceCardAdmin(admin.ModelAdmin):
    """A new price is a new card (price_card_create, audited), valid from its `valid_from`; a card
    is never edited or deleted: the jobs costed with it keep it."""

    form = PriceCardForm
    list_display = ("id", "valid_from", "currency", "cpu_hour", "gpu_hour", "note", "created_by", "created_at")
    list_select_related = ("created_by",)

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        if obj is None:
            return ()
        return ("cpu_hour", "gpu_hour", "currency", "valid_from", "note", "created_by", "created_at")

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)  # the list, never a card

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: PriceCard, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        card = price_card_create(
            actor=request.user,
            cpu_hour=data["cpu_hour"],
            gpu_hour=data["gpu_hour"],
            currency=data["currency"],
            valid_from=data["valid_from"],
            note=data.get("note", ""),
        )
        obj.pk, obj._state = card.pk, card._state


@admin.register(JobCost)
class JobCostAdmin(ReadOnlyAdmin):
    """Written by the training worker with each heartbeat and closed when the job ends."""

    list_display = ("job", "wall_seconds", "cpu_seconds", "gpu_seconds", "units", "amount", "currency", "final")
    list_filter = ("final", "currency")
    search_fields = ("job__model__name",)
    list_select_related = ("job__model",)


@admin.register(Experiment)
class ExperimentAdmin(ReadOnlyAdmin):
    """Started from the API or the dashboard; here it is read, and stopped through experiment_stop
    (permission-checked, audited)."""

    list_display = ("id", "model", "champion", "challenger", "state", "alpha", "auto_promote", "started_at", "ended_at")
    list_filter = ("state", "auto_promote")
    search_fields = ("model__name",)
    list_select_related = ("model", "champion", "challenger")
    actions = ["stop"]

    @admin.action(description="Stop the selected running experiments")
    def stop(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> None:
        stopped = 0
        for experiment in queryset.select_related("model"):
            try:
                experiment_stop(
                    actor=request.user, model=experiment.model, experiment_id=experiment.pk, reason="stopped in admin"
                )
                stopped += 1
            except ServiceError as exc:
                self.message_user(request, f"Experiment {experiment.pk}: {exc.message}", messages.ERROR)
        if stopped:
            self.message_user(request, f"{stopped} experiment(s) stopped.", messages.SUCCESS)
