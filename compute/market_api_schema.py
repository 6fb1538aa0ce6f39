"""The shapes of the market API's answers, for the OpenAPI document only (the views write
them with compute.selectors.market's ``present_*`` functions;
tests/portal/test_api_schema_answers.py checks real answers against these). Amounts are
decimal strings (billing.api_schema.Amount)."""

from rest_framework import serializers

from billing.api_schema import Amount
from compute.models import Cargo
from compute.selectors.market import HISTORY_WINDOWS
from portal.api.serializers import envelope


class RateOut(serializers.Serializer):
    workload_slug = serializers.CharField()
    avg_price = Amount()
    min_price = Amount()
    max_price = Amount()
    num_hosts = serializers.IntegerField()
    suggested_bid = Amount()
    surge = serializers.BooleanField()
    timestamp = serializers.DateTimeField()


RatesResponse = envelope("RatesResponse", RateOut(many=True))


RateResponse = envelope("RateResponse", RateOut())


class HistoryMeta(serializers.Serializer):
    window = serializers.ChoiceField(choices=list(HISTORY_WINDOWS))
    count = serializers.IntegerField()


HistoryResponse = envelope("HistoryResponse", RateOut(many=True), meta=HistoryMeta())


class NetworkStats(serializers.Serializer):
    online_islands = serializers.IntegerField()
    regions = serializers.ListField(child=serializers.CharField())
    jobs_completed = serializers.IntegerField()


NetworkStatsResponse = envelope("NetworkStatsResponse", NetworkStats())


class Recommendation(serializers.Serializer):
    workload_slug = serializers.CharField()
    model_url = serializers.CharField(allow_null=True)
    model_hash = serializers.CharField(allow_null=True)
    runtime_type = serializers.ChoiceField(choices=Cargo.Runtime.choices)
    estimated_earnings_per_job = Amount()
    queued_demand = serializers.IntegerField()
    demand_score = serializers.IntegerField()


class RecommendationsResponse(serializers.Serializer):
    host_id = serializers.UUIDField()
    recommendations = Recommendation(many=True)


class AskingPrices(serializers.Serializer):
    host_id = serializers.UUIDField()
    asking_prices = serializers.DictField(child=Amount())


AskingPricesResponse = envelope("AskingPricesResponse", AskingPrices())


class Bid(serializers.Serializer):
    workload = serializers.CharField()
    bid = Amount()


BidsResponse = envelope("BidsResponse", Bid(many=True))


BidResponse = envelope("BidResponse", Bid())
