"""``GET /metrics``: the Prometheus metrics of every process of this machine (or shared
volume), for a scraper that shows the token (``METRICS_TOKEN``, as a bearer token) or
calls from a network of ``METRICS_ALLOWED_NETWORKS``; anyone else gets 403 in the one
error shape, and nobody at all when neither is set.

Besides what the processes counted (core.metrics), a scrape reads levels at that
moment: jobs that have not ended, by state and Cargo; the oldest queued job's wait;
online Islands; and the backlog of the coordinator's JetStream consumers.
"""

import hmac
import ipaddress
import logging
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from compute.models import Island, Job
from compute.selectors.islands import online_q
from core.errors import error_body
from sail.client import sail
from sail.streams import CONSUMERS

logger = logging.getLogger(__name__)
ACTIVE = (Job.Status.PENDING, Job.Status.QUEUED, Job.Status.RUNNING)


def allowed(request: HttpRequest) -> bool:
    header = request.headers.get("Authorization", "")
    token = settings.METRICS_TOKEN
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header.removeprefix("Bearer ").encode(), token.encode())
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR") or "")
    except ValueError:
        return False
    return any(address in network for network in settings.METRICS_ALLOWED_NETWORKS)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not allowed(request):
        message = "Metrics need METRICS_TOKEN as a bearer token, or an allowed network"
        return JsonResponse(error_body(message, "forbidden"), status=403)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=settings.METRICS_DIR)
    registry.register(Levels())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class Levels(Collector):
    """What is true at the scrape (each part skipped, and logged, when it fails)."""

    NAMES = (
        "archipelago_jobs",
        "archipelago_queue_oldest_wait_seconds",
        "archipelago_islands_online",
        "archipelago_jetstream_consumer_pending",
        "archipelago_jetstream_consumer_ack_pending",
    )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for part in (self.jobs, self.islands, self.consumers):
            try:
                yield from part()
            except Exception:
                logger.exception("metrics: %s failed", part.__name__)

    def jobs(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily(
            "archipelago_jobs", "Jobs not ended, by state and Cargo", labels=["state", "cargo"]
        )
        rows = (
            Job.objects.filter(status__in=ACTIVE)
            .values_list("status", "cargo__slug")
            .annotate(n=Count("pk"))
            .order_by()
        )
        for status, cargo, n in rows:
            jobs.add_metric([status, cargo], n)
        yield jobs
        oldest = Job.objects.filter(status=Job.Status.QUEUED).aggregate(at=Min("created_at"))
        wait = (timezone.now() - oldest["at"]).total_seconds() if oldest["at"] else 0.0
        yield GaugeMetricFamily(
            "archipelago_queue_oldest_wait_seconds", "How long the oldest queued job waits",
            value=wait,
        )  # fmt: skip

    def islands(self) -> Iterator[GaugeMetricFamily]:
        count = Island.objects.filter(online_q(), suspended=False).count()
        yield GaugeMetricFamily("archipelago_islands_online", "Islands online", value=count)

    def consumers(self) -> Iterator[GaugeMetricFamily]:
        pending = GaugeMetricFamily(
            "archipelago_jetstream_consumer_pending",
            "Messages of a coordinator's consumer not delivered yet",
            labels=["stream", "consumer"],
        )
        unacked = GaugeMetricFamily(
            "archipelago_jetstream_consumer_ack_pending",
            "Messages of a coordinator's consumer delivered and not acked yet",
            labels=["stream", "consumer"],
        )

        async def read(nc):
            js = nc.jetstream()
            return [await js.consumer_info(c.stream, c.durable) for c in CONSUMERS.values()]

        for info in sail.call(read, timeout=2.0):
            labels = [info.stream_name, info.name]
            pending.add_metric(labels, info.num_pending or 0)
            unacked.add_metric(labels, info.num_ack_pending or 0)
        yield pending
        yield unacked
