from django.contrib.auth import views as auth_views
from django.urls import path

from portal import key_views, views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("quickstart", views.quickstart, name="quickstart"),
    # Accounts
    path("signup", views.signup, name="signup"),
    path("login", views.LoginView.as_view(), name="login"),
    path("logout", views.LogoutView.as_view(), name="logout"),
    path("login/magic", views.magic_link_request, name="magic_link"),
    path("login/magic/sent", views.magic_link_sent, name="magic_link_sent"),
    path("login/magic/<str:token>", views.magic_link_confirm, name="magic_link_confirm"),
    path("password-reset", views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password-reset/sent",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "password-reset/<uidb64>/<token>",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password-reset/done",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    # /settings (the Islands and credit-history sections come from their own apps)
    path("settings", views.settings_page, name="settings"),
    path("settings/profile", views.profile_update, name="settings_profile"),
    path("settings/sessions/end", views.sign_out_everywhere, name="sign_out_everywhere"),
    path("settings/api-keys", key_views.api_keys, name="api_keys"),
    path("settings/api-keys/<uuid:key_id>/revoke", key_views.api_key_revoke, name="api_key_revoke"),
    path("settings/api-keys/<uuid:key_id>/limits", key_views.api_key_limits, name="api_key_limits"),
]
