from django.urls import path

from pairing import views

urlpatterns = [
    path("pair", views.pair, name="pair"),
    path("pair/confirm", views.pair_confirm, name="pair-confirm"),
    path("pair/mobile", views.pair_mobile, name="pair-mobile"),
    path("settings/islands", views.your_islands, name="your-islands"),
    path("settings/islands/<uuid:island_id>/rename", views.island_rename, name="island-rename"),
    path("settings/islands/<uuid:island_id>/unpair", views.island_unpair, name="island-unpair"),
]
