from django.contrib import admin
from guardian.admin import GuardedModelAdmin

from models_mgmt.models import AIModel, AuditEvent, Bar, BaseModel, Dataset, ModelVersion, TrainingEpoch, TrainingJob


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only services write (versions, jobs, audit): admin shows them, never edits them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AIModel)
class AIModelAdmin(GuardedModelAdmin):
    list_display = ("name", "family", "owner", "default_dataset", "created_at")
    list_filter = ("family",)
    search_fields = ("name", "description")
    raw_id_fields = ("owner",)


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
    list_display = ("id", "model", "status", "progress", "epoch", "total_epochs", "attempts", "created_at")
    list_filter = ("status",)
    search_fields = ("model__name",)
    list_select_related = ("model",)
    inlines = [TrainingEpochInline]


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "symbol", "timeframe", "source", "bar_count", "first_date", "last_date")
    list_filter = ("source", "timeframe")
    readonly_fields = ("source", "bar_count", "first_date", "last_date", "created_by", "created_at")


@admin.register(Bar)
class BarAdmin(ReadOnlyAdmin):
    list_display = ("dataset", "date", "open", "high", "low", "close", "volume")
    list_filter = ("dataset",)
    date_hierarchy = "date"


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor", "action", "object_type", "object_repr", "ai_model_name")
    list_filter = ("action", "object_type")
    search_fields = ("object_repr", "ai_model_name")

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(BaseModel)
class BaseModelAdmin(ReadOnlyAdmin):
    """Registered through the API or `register_base_model`, which check the files and hash them."""

    list_display = ("name", "ollama_tag", "architecture", "parameters", "path", "created_at")
    search_fields = ("name", "ollama_tag", "path")
