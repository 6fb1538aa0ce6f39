from django.urls import path

from billing import views

urlpatterns = [
    path("exchange", views.exchange, name="exchange"),
    path("settings/credits", views.credit_history, name="credit-history"),
]
