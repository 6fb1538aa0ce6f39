"""Market and network endpoints of the public API: rates and their history, owners'
asks, saved bids, the network's numbers, what an Island should preload."""

from decimal import Decimal

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from compute import market_api_schema as out
from compute.models import Cargo, Island
from compute.selectors import market as selectors
from compute.services import market as exchange
from core.money import MONEY
from portal.api.base import InputSerializer, PublicView, SignedRequest, query, validated


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
