"""The hosts (Islands) API: what anyone signed in may know about the network's Islands.

Only public fields leave here; the owner's identity never does.
"""

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from compute import api_schema as out
from compute.models import Island, KarmaEvent
from compute.selectors.islands import karma_history, network_islands
from compute.services.karma import MINUTES_PER_KARMA
from portal.api.base import PageSerializer, page_schema, paginate, query, validated


def present_host(island: Island) -> dict:
    return {
        "id": str(island.pk),
        "name": island.name,
        "status": island.live_status,  # type: ignore[attr-defined]
        "region": island.region,
        "capabilities": island.capabilities,
        "karma_score": island.karma,
        "last_heartbeat_at": island.last_heartbeat_at,
    }


def present_karma(island: Island) -> dict:
    threshold = settings.KARMA_MONETIZATION_THRESHOLD
    return {
        "host_id": str(island.pk),
        "karma_score": island.karma,
        "pending_minutes": island.pending_minutes,
        "minutes_per_karma": MINUTES_PER_KARMA,
        "monetization_threshold": threshold,
        "monetization_unlocked": island.karma >= threshold,
        "jobs_completed": island.jobs_completed,
        "jobs_failed": island.jobs_failed,
    }


KARMA_EVENT_FIELDS = (
    "delta", "minutes", "reason", "karma_after", "pending_minutes_after", "created_at",
)  # fmt: skip


def present_karma_event(event: KarmaEvent) -> dict:
    return {"id": event.pk, **{name: getattr(event, name) for name in KARMA_EVENT_FIELDS}}


class HostFilter(PageSerializer):
    status = serializers.ChoiceField(choices=Island.Status.choices, required=False)


def _island(host_id: str) -> Island:
    return get_object_or_404(network_islands(), pk=host_id)


class HostListView(APIView):
    @page_schema(
        "The Islands of the network (all, or ?status=online|offline)",
        out.HostListResponse,
        parameters=(OpenApiParameter("status", enum=["online", "offline"]),),
        operation_id="hosts_list",
    )
    def get(self, request: Request) -> Response:
        status = validated(HostFilter, query(request)).get("status")
        return Response(paginate(request, network_islands(status=status), present_host))


class HostDetailView(APIView):
    @extend_schema(summary="One Island", responses=out.HostResponse)
    def get(self, request: Request, host_id: str) -> Response:
        return Response({"data": present_host(_island(host_id))})


class HostKarmaView(APIView):
    @extend_schema(summary="An Island's karma", responses=out.KarmaResponse)
    def get(self, request: Request, host_id: str) -> Response:
        return Response({"data": present_karma(_island(host_id))})


class HostKarmaHistoryView(APIView):
    @page_schema("Every change of an Island's karma, newest first", out.KarmaHistoryResponse)
    def get(self, request: Request, host_id: str) -> Response:
        island = _island(host_id)
        return Response(paginate(request, karma_history(island=island), present_karma_event))
