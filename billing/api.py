"""Account, market, network and ledger endpoints of the public API."""

import uuid
from decimal import Decimal
from functools import cache

from django.db import connection
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import api_schema as out
from billing import exchange, selectors
from billing.models import Balance, LedgerEntry
from compute.models import Cargo, Island
from core.money import MONEY
from portal.api.base import (
    InputSerializer,
    PageSerializer,
    PublicView,
    SignedRequest,
    paginate,
    query,
    validated,
)
from portal.api.serializers import AccountResponse, AccountSerializer


@cache
def _balance_sql() -> str:
    """The ORM's SQL for one account's balance, built once per process: building it took
    the ORM about four times as long as the database took to answer it (bench/README.md)."""
    query = Balance.objects.filter(pk=uuid.UUID(int=0)).values_list(*BALANCE_FIELDS)[:1]
    return query.query.sql_with_params()[0]


def _balance_row(user) -> tuple[Decimal, ...]:
    with connection.cursor() as cursor:
        # The field converts the UUID for the backend (SQLite stores it as hex text).
        user_id = Balance._meta.pk.get_db_prep_value(user.pk, connection)
        cursor.execute(_balance_sql(), [user_id])
        return cursor.fetchone() or (Decimal(0),) * len(BALANCE_FIELDS)


BALANCE_FIELDS = ("available", "held", "earnings")
_account_serializer = AccountSerializer()  # fields built once; to_representation keeps no state


class AccountView(APIView):
    """The API's hottest read (every client's balance check): the balance is read fresh
    on every request, with a query compiled once and a serializer built once."""

    @extend_schema(summary="Your account and available credits", responses=AccountResponse)
    def get(self, request: SignedRequest) -> Response:
        user = request.user
        available, held, earnings = _balance_row(user)
        account = {
            "id": user.pk,
            "email": user.email,
            "credits": available,
            "held": held,
            "earnings": earnings,
            "created_at": user.date_joined,
        }
        return Response({"data": _account_serializer.to_representation(account)})


def _cargo(slug: str) -> Cargo:
    return get_object_or_404(Cargo, slug=slug, is_enabled=True, is_approved=True)


class RatesView(PublicView):
    @extend_schema(
        summary="Current market rate of every Cargo",
        operation_id="market_rates_list",
        responses=out.RatesResponse,
    )
    def get(self, request: Request) -> Response:
        surge = selectors.surge_active()
        snaps = selectors.latest_snapshots().values()
        rows = sorted((selectors.present_rate(s, surge=surge) for s in snaps), key=_by_slug)
        return Response({"data": rows})


def _by_slug(row: dict) -> str:
    return row["workload_slug"]


class RateView(PublicView):
    @extend_schema(summary="Current market rate of one Cargo", responses=out.RateResponse)
    def get(self, request: Request, slug: str) -> Response:
        cargo = _cargo(slug)
        snap = cargo.rates.order_by("-created_at").first()
        if snap is None:
            return Response({"error": {"message": "No rate yet", "code": "not_found"}}, status=404)
        return Response({"data": selectors.present_rate(snap, surge=selectors.surge_active())})


class HistoryInput(InputSerializer):
    window = serializers.ChoiceField(choices=list(selectors.HISTORY_WINDOWS), default="24h")


class HistoryView(PublicView):
    @extend_schema(
        summary="Price history of a Cargo (window 1h, 24h, 7d or 30d): a row per minute, "
        "hour, hour or day (the average of the averages, the lowest and highest asks, the "
        "most Islands)",
        parameters=[HistoryInput],
        responses=out.HistoryResponse,
    )
    def get(self, request: Request, slug: str) -> Response:
        window = validated(HistoryInput, query(request))["window"]
        cargo = _cargo(slug)
        buckets = selectors.rate_histories(window=window, cargo=cargo.pk).get(cargo.pk, [])
        rows = [selectors.present_bucket(cargo.slug, row) for row in buckets]
        return Response({"data": rows, "meta": {"window": window, "count": len(rows)}})


class NetworkStatsView(PublicView):
    @extend_schema(
        summary="Islands online, their regions and jobs completed",
        responses=out.NetworkStatsResponse,
    )
    def get(self, request: Request) -> Response:
        return Response({"data": selectors.network_stats()})


class RecommendationsInput(InputSerializer):
    host_id = serializers.UUIDField()


class RecommendationsView(PublicView):
    @extend_schema(
        summary="Cargos an Island should preload, by network demand",
        parameters=[RecommendationsInput],
        responses=out.RecommendationsResponse,
    )
    def get(self, request: Request) -> Response:
        host_id = validated(RecommendationsInput, query(request))["host_id"]
        island = get_object_or_404(Island, pk=host_id)
        return Response(
            {"host_id": str(island.pk), "recommendations": selectors.recommendations(island=island)}
        )


class AskingPricesInput(InputSerializer):
    host_id = serializers.UUIDField()
    prices = serializers.DictField(
        child=serializers.DecimalField(**MONEY, min_value=Decimal(0)), allow_empty=False
    )


class AskingPricesView(APIView):
    @extend_schema(
        summary="Set your Island's asking price per Cargo",
        request=AskingPricesInput,
        responses=out.AskingPricesResponse,
    )
    def post(self, request: SignedRequest) -> Response:
        data = validated(AskingPricesInput, request.data)
        asks = exchange.set_asking_prices(
            owner=request.user, island_id=data["host_id"], prices=data["prices"]
        )
        return Response({"data": {"host_id": str(data["host_id"]), "asking_prices": asks}})


class BidInput(InputSerializer):
    workload = serializers.SlugField()
    bid = serializers.DecimalField(**MONEY, min_value=Decimal(0))


class BidsView(APIView):
    @extend_schema(summary="Your saved bids per Cargo", responses=out.BidsResponse)
    def get(self, request: SignedRequest) -> Response:
        bids = request.user.bids.select_related("cargo").order_by("cargo__slug")
        return Response({"data": [{"workload": b.cargo.slug, "bid": str(b.bid)} for b in bids]})

    @extend_schema(
        summary="Save the most you pay per job of a Cargo",
        request=BidInput,
        responses=out.BidResponse,
    )
    def post(self, request: SignedRequest) -> Response:
        data = validated(BidInput, request.data)
        exchange.save_bid(user=request.user, cargo_slug=data["workload"], bid=data["bid"])
        return Response({"data": {"workload": data["workload"], "bid": str(data["bid"])}})


def present_entry(entry: LedgerEntry) -> dict:
    return {
        "id": entry.pk,
        "kind": entry.kind,
        "amount": str(entry.amount),
        "job_id": str(entry.job_id) if entry.job_id else None,
        "reason": entry.reason,
        "available_after": str(entry.available_after),
        "held_after": str(entry.held_after),
        "created_at": entry.created_at,
    }


class LedgerView(APIView):
    @extend_schema(
        summary="Your ledger entries, newest first",
        parameters=[PageSerializer],
        responses=out.LedgerResponse,
    )
    def get(self, request: SignedRequest) -> Response:
        return Response(
            paginate(request, selectors.ledger_entries(user=request.user), present_entry)
        )
