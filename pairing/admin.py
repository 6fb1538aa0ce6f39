from django.contrib import admin

from pairing.models import MobilePairingSession, PairingAttempt, PairingCode


@admin.register(PairingCode)
class PairingCodeAdmin(admin.ModelAdmin):
    list_display = ("island", "created_at", "expires_at", "used_at", "used_by")
    exclude = ("seed", "code_hash")
    readonly_fields = ("island", "created_at", "expires_at", "used_at", "used_by")


@admin.register(MobilePairingSession)
class MobilePairingSessionAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "created_at", "expires_at", "claimed_at", "island")
    exclude = ("code_hash",)
    readonly_fields = ("user", "created_at", "expires_at", "claimed_at", "island")


@admin.register(PairingAttempt)
class PairingAttemptAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "outcome", "user", "ip", "code_prefix", "island")
    list_filter = ("kind", "outcome")
    search_fields = ("user__email", "ip")
    readonly_fields = [f.name for f in PairingAttempt._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
