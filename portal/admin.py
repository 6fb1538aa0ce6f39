from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from portal.keys import services as keys
from portal.models import ApiKey, MagicLink, User


class UserCreateForm(AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("email",)


class UserEditForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    add_form = UserCreateForm
    form = UserEditForm
    ordering = ["email"]
    list_display = ["email", "display_name", "is_staff", "is_active", "date_joined"]
    list_filter = ["is_staff", "is_active"]
    search_fields = ["email", "display_name"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Profile", {"fields": ["display_name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [
        (
            None,
            {"classes": ["wide"], "fields": ["email", "usable_password", "password1", "password2"]},
        )
    ]


LIMITS = ("expires_at", *keys.CAPS, "allowed_cargos", "allowed_ips")  # edited by the owner


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created by their owners (the full key is shown only to them); staff may revoke."""

    list_display = ["name", "prefix", "user", "created_at", "last_used_at", "revoked_at"]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__email"]
    fields = ["user", "name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at",
              *LIMITS]  # fmt: skip
    readonly_fields = ["user", "prefix", "scopes", "created_at", "last_used_at", "revoked_at",
                       *LIMITS]  # fmt: skip
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset) -> None:
        actor = keys.Actor.of(request)  # the staff member, in the owner's audit trail
        for key in queryset.filter(revoked_at__isnull=True):
            keys.revoke_key(actor=actor, key=key)


@admin.register(MagicLink)
class MagicLinkAdmin(admin.ModelAdmin):
    list_display = ["user", "created_at", "expires_at", "used_at"]
    list_select_related = ["user"]
    fields = ["user", "created_at", "expires_at", "used_at"]
    readonly_fields = ["user", "created_at", "expires_at", "used_at"]

    def has_add_permission(self, request) -> bool:
        return False
