from django.contrib.auth import views as auth_views
from django.urls import path

app_name = "accounts"

# Placeholder routes; the sign-in flow with two factors replaces them.
urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="accounts/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("security/", auth_views.LoginView.as_view(template_name="accounts/login.html"), name="security"),
    path("staff/", auth_views.LoginView.as_view(template_name="accounts/login.html"), name="staff_list"),
]
