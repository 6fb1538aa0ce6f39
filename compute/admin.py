from django import forms
from django.contrib import admin
from jsonschema.exceptions import SchemaError

from billing.admin import ReadOnlyAdmin
from compute.models import AskingPrice, Cargo, Island, Job, RateSnapshot, SavedBid
from compute.services.cargos import check_schema


class CargoForm(forms.ModelForm):
    class Meta:
        model = Cargo
        fields = "__all__"  # noqa: DJ007 - admins edit every field of a Cargo

    def clean_input_schema(self) -> object:
        schema = self.cleaned_data.get("input_schema")
        try:
            check_schema(schema)
        except SchemaError as exc:
            raise forms.ValidationError(f"Not a valid JSON Schema: {exc.message}") from exc
        return schema


@admin.register(Cargo)
class CargoAdmin(admin.ModelAdmin):
    form = CargoForm
    list_display = (
        "slug",
        "name",
        "category",
        "runtime_type",
        "price_per_job",
        "is_enabled",
        "is_approved",
    )
    list_filter = ("category", "runtime_type", "is_enabled", "is_approved")
    list_editable = ("is_enabled", "is_approved")
    search_fields = ("slug", "name", "description")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "cargo", "status", "island", "attempts", "created_at")
    list_filter = ("status", "cargo")
    search_fields = ("id", "user__email")
    raw_id_fields = ("user", "island")
    readonly_fields = ("created_at", "assigned_at", "started_at", "completed_at", "last_seq")
    list_select_related = ("user", "cargo", "island")


@admin.register(Island)
class IslandAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "name",
        "owner",
        "status",
        "region",
        "karma",
        "suspended",
        "last_heartbeat_at",
    )
    list_filter = ("status", "suspended", "platform")
    search_fields = ("id", "name", "owner__email")
    raw_id_fields = ("owner",)


# The compute exchange: read-only, as billing's ledger (its rows change through the API
# and the snapshot task only).
@admin.register(AskingPrice)
class AskingPriceAdmin(ReadOnlyAdmin):
    list_display = ["island", "cargo", "price", "updated_at"]
    list_select_related = ["island", "cargo"]
    search_fields = ["island__name", "cargo__slug"]


@admin.register(SavedBid)
class SavedBidAdmin(ReadOnlyAdmin):
    list_display = ["user", "cargo", "bid", "updated_at"]
    list_select_related = ["user", "cargo"]
    search_fields = ["user__email", "cargo__slug"]


@admin.register(RateSnapshot)
class RateSnapshotAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "cargo", "avg_price", "min_price", "max_price", "num_hosts"]
    list_filter = ["surge"]
    list_select_related = ["cargo"]
    search_fields = ["cargo__slug"]
    date_hierarchy = "created_at"
    show_full_result_count = False
