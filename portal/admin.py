from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from portal import audit
from portal.keys import services as keys
from portal.models import ApiKey, AuditEntry, MagicLink, User


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

    def save_model(self, request, obj: User, form, change: bool) -> None:
        """A change of the account's flags goes into its audit log, in the admin's
        transaction (Django's change view saves in one)."""
        before = User.objects.filter(pk=obj.pk).values(*FLAGS).first() if change else None
        super().save_model(request, obj, form, change)
        changed = {
            flag: [before[flag], getattr(obj, flag)]
            for flag in FLAGS
            if before is not None and before[flag] != getattr(obj, flag)
        }
        if changed:
            actor = audit.Actor.of(request)
            audit.record(account=obj, action=audit.Action.PERMISSIONS_CHANGED, actor=actor,
                         **changed)  # fmt: skip


FLAGS = ("is_active", "is_staff", "is_superuser")


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


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """The audit log, read-only: entries are written by the actions themselves
    (portal.audit)."""

    list_display = ["at", "account", "action", "actor", "by_user", "ip"]
    list_filter = ["action", "actor", ("account", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["account", "by_user"]
    search_fields = ["account__email", "by_user__email", "ip"]
    date_hierarchy = "at"
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
