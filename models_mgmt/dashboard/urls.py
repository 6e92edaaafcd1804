"""Dashboard routes, mounted at /model-management/ (the tabs are pages; ?model= selects a model)."""

from django.urls import path

from . import views

app_name = "dashboard"

urlpatterns = [
    path("", views.models_tab, name="models"),
    path("fine-tuning/", views.fine_tuning_tab, name="fine-tuning"),
    path("versions/", views.versions_tab, name="versions"),
    path("monitoring/", views.monitoring_tab, name="monitoring"),
]
