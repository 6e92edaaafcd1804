from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import FileResponse, HttpRequest
from django.urls import include, path
from django.views.generic import RedirectView


def favicon(request: HttpRequest) -> FileResponse:
    """Browsers ask every page's site for /favicon.ico (admin and the API docs name no icon)."""
    response = FileResponse((settings.BASE_DIR / "static" / "favicon.ico").open("rb"), content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response


urlpatterns = [
    path("favicon.ico", favicon),
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
