from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="dashboard:models", permanent=False)),
    path("model-management/", include("models_mgmt.dashboard.urls")),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="dashboard/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include("models_mgmt.api.urls")),
]

handler400 = "models_mgmt.api.errors.bad_request"
handler403 = "models_mgmt.api.errors.permission_denied"
handler404 = "models_mgmt.api.errors.not_found"
handler500 = "models_mgmt.api.errors.server_error"
