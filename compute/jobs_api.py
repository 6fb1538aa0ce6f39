"""The Cargo catalog and the jobs API: /cargos, /workloads, /jobs (thin views over
compute.selectors and compute.services)."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from compute import api_schema as out
from compute.models import Cargo, Job
from compute.selectors import cargos as cargo_selectors
from compute.selectors.jobs import job_of, jobs_of
from compute.services import dispatch, idempotency, jobs, lifecycle, submission, waiting
from compute.services.publish import Outbox
from core import tx
from core.errors import ApiError
from portal.api.base import (
    InputSerializer,
    PublicView,
    SignedRequest,
    page_schema,
    paginate,
    plain_int,
    plain_text,
    query,
    validated,
)
from portal.api.lane import Call, Reply
from portal.keys.limits import KeyLimits
from portal.models import User

_datetime = serializers.DateTimeField()


def iso(moment: datetime | None) -> str | None:
    return _datetime.to_representation(moment) if moment else None


# The fields of a Cargo in each answer, in their order (the models' names, but ``id``).
CARGO_FIELDS = ("slug", "name", "description", "category", "runtime_type", "onnx_task_type",
                "price_per_job", "required_vram_mb", "required_ram_mb")  # fmt: skip
WORKLOAD_FIELDS = ("id", "name", "slug", "description", "category", "runtime_type",
                   "required_vram_mb", "required_ram_mb", "price_per_job", "time_limit_seconds",
                   "input_schema", "is_enabled")  # fmt: skip


def _fields(cargo: Cargo, names: tuple[str, ...]) -> dict:
    """``names`` of ``cargo``, its price as a JSON number."""
    values = {name: getattr(cargo, name) for name in names}
    values["price_per_job"] = float(cargo.price_per_job)
    return values


def present_cargo(cargo: Cargo) -> dict:
    return _fields(cargo, CARGO_FIELDS)


def present_workload(cargo: Cargo) -> dict:
    return _fields(cargo, WORKLOAD_FIELDS)


def present_job(job: Job) -> dict:
    return {
        "id": str(job.pk),
        "workload_id": job.cargo_id,
        "workload_slug": job.cargo.slug,
        "status": job.status,
        "priority": job.priority,
        "input": job.input,
        "output": job.output,
        "result": job.result,  # extension: a Cargo's structured output (OCR lines)
        "usage": lifecycle.usage_of(job),
        "island_id": str(job.island_id) if job.island_id else None,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "completed_at": iso(job.completed_at),
        "duration_ms": jobs.duration_ms(job),
        "error": job.error or None,
        "queue": waiting.queue_of(job),  # extension: why a waiting job waits, until when
    }


class CatalogFilter(InputSerializer):
    runtime_type = serializers.ChoiceField(choices=Cargo.Runtime.choices, required=False)
    category = serializers.ChoiceField(choices=Cargo.Category.choices, required=False)


class CargoListView(PublicView):
    @extend_schema(
        summary="The Cargo catalog (no authentication)",
        parameters=[CatalogFilter],
        responses=out.CargoListResponse,
    )
    def get(self, request: Request) -> Response:
        filters = validated(CatalogFilter, query(request))
        cargos = [present_cargo(c) for c in cargo_selectors.catalog(**filters)]
        return Response({"cargos": cargos, "count": len(cargos)})


class WorkloadListView(PublicView):
    @page_schema(
        "Workloads (Cargos) that jobs may use",
        out.WorkloadListResponse,
        operation_id="workloads_list",
    )
    def get(self, request: Request) -> Response:
        return Response(paginate(request, cargo_selectors.catalog(), present_workload))


class WorkloadDetailView(PublicView):
    @extend_schema(summary="One workload (Cargo) by slug", responses=out.WorkloadResponse)
    def get(self, request: Request, slug: str) -> Response:
        cargo = cargo_selectors.usable_cargo(slug)
        if cargo is None:
            raise ApiError("Workload not found", code="not_found", status_code=404)
        return Response({"data": present_workload(cargo)})


class JobInput(InputSerializer):
    workload = serializers.CharField(max_length=100)
    input = serializers.JSONField()
    priority = serializers.IntegerField(min_value=0, max_value=100, default=0)
    region = serializers.CharField(max_length=50, required=False, default="")  # extension
    # The most this job may cost (product-notes: the job's own bid comes first).
    bid = serializers.DecimalField(
        max_digits=20, decimal_places=6, min_value=Decimal(0), required=False, allow_null=True
    )
    # Extension: how long the job may wait for an Island (compute.services.waiting).
    queue_timeout_seconds = serializers.IntegerField(
        min_value=1,
        max_value=settings.JOB_QUEUE_TIMEOUT_MAX_SECONDS,
        required=False,
        help_text="Extension. Seconds the job may wait for an Island; then it ends with "
        "status timeout, an error that says why, and its hold released. Default: the "
        f"coordinator's JOB_QUEUE_TIMEOUT_SECONDS ({settings.JOB_QUEUE_TIMEOUT_SECONDS}). "
        "Counted again after a requeue; checked every 5 s.",
    )

    @staticmethod
    def quick(data: Any) -> dict | None:
        """The validated data of a usual submission (portal.api.base.validated)."""
        if not isinstance(data, dict) or not data.keys() <= QUICK_FIELDS:
            return None
        priority, region = data.get("priority", 0), data.get("region", "")
        timeout = data.get("queue_timeout_seconds")  # absent: None
        if (
            data.get("input") is None  # absent, or null: the serializer's errors
            or not plain_text(data.get("workload"), 100)
            or not plain_int(priority, 0, 100)
            or not ((region == "" and "region" not in data) or plain_text(region, 50))
            or (
                "queue_timeout_seconds" in data
                and not plain_int(timeout, 1, settings.JOB_QUEUE_TIMEOUT_MAX_SECONDS)
            )
        ):
            return None
        fields = {"workload": data["workload"], "input": data["input"], "priority": priority,
                  "region": region}  # fmt: skip
        if timeout is not None:
            fields["queue_timeout_seconds"] = timeout
        return fields


QUICK_FIELDS = frozenset({"workload", "input", "priority", "region", "queue_timeout_seconds"})


async def submit(
    db: tx.Db,
    *,
    user: User,
    data: Any,
    idempotency_key: str | None,
    outbox: Outbox | None = None,
    api_key: KeyLimits | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """``POST /jobs`` on either path (DRF, or the fast lane): ``(status, body,
    headers)``. ``outbox``: the caller publishes the assignment (see submission.submit_job);
    ``api_key``: the limits of the request's key."""
    if idempotency_key is None:
        return *await _create(db, user, data, None, outbox, api_key), {}
    key = idempotency.check_key(idempotency_key)
    code, body, replayed = await idempotency.run_once(
        db, user_id=user.pk, key=key, scope=SCOPE, body=data,
        run=lambda: _create(db, user, data, key, outbox, api_key),
    )  # fmt: skip
    return code, body, {"Idempotent-Replayed": "true"} if replayed else {}


SCOPE = "POST /jobs"


async def _create(
    db: tx.Db,
    user: User,
    data: Any,
    key: str | None,
    outbox: Outbox | None,
    api_key: KeyLimits | None,
) -> tuple[int, Any]:
    fields = validated(JobInput, data)
    job = await submission.submit_job(
        db,
        user=user,
        workload=fields["workload"],
        job_input=fields["input"],
        priority=fields["priority"],
        region=fields["region"],
        idempotency_key=key,
        bid=fields.get("bid"),
        queue_timeout=fields.get("queue_timeout_seconds"),
        outbox=outbox,
        key=api_key,
    )
    return status.HTTP_201_CREATED, {"data": present_job(job)}


async def submit_fast(call: Call) -> Reply:
    """``POST /jobs`` in the API's fast lane: the same :func:`submit`, on the event
    loop's own database connection (Postgres; a thread on SQLite); the assignment is
    published on the loop once the job is committed."""
    data, outbox = call.json(), Outbox()
    key = call.header("Idempotency-Key")
    code, body, headers = await tx.work(
        submit, user=call.user, data=data, idempotency_key=key, outbox=outbox,
        api_key=call.key.limits,
    )  # fmt: skip
    await dispatch.deliver(outbox)
    return Reply(status=code, body=body, headers=headers)


class JobListView(APIView):
    @page_schema("Your recent jobs", out.JobListResponse, operation_id="jobs_list")
    def get(self, request: SignedRequest) -> Response:
        return Response(paginate(request, jobs_of(request.user), present_job))

    @extend_schema(
        summary="Submit a job (Idempotency-Key supported)",
        request=JobInput,
        responses={201: out.JobResponse},
    )
    def post(self, request: SignedRequest) -> Response:
        key = request.headers.get("Idempotency-Key")
        limits = getattr(request.auth, "limits", None)  # a key's (portal.api.auth.KeyInfo)
        code, body, headers = tx.sync(submit, user=request.user, data=request.data,
                                      idempotency_key=key, api_key=limits)  # fmt: skip
        return Response(body, status=code, headers=headers)


class JobDetailView(APIView):
    @extend_schema(summary="One of your jobs", responses=out.JobResponse)
    def get(self, request: SignedRequest, job_id: str) -> Response:
        return Response({"data": present_job(_own_job(request, job_id))})

    @extend_schema(
        summary="Cancel a pending, queued or running job (answers the cancelled job)",
        responses={200: out.JobResponse},
    )
    def delete(self, request: SignedRequest, job_id: str) -> Response:
        _own_job(request, job_id)
        job = jobs.cancel_job(user=request.user, job_id=job_id)
        return Response({"data": present_job(job)})


class JobOutputView(APIView):
    @extend_schema(summary="The whole output of a job", responses=out.JobOutputResponse)
    def get(self, request: SignedRequest, job_id: str) -> Response:
        job = _own_job(request, job_id)
        return Response(
            {
                "data": {
                    "id": str(job.pk),
                    "status": job.status,
                    "output": job.output,
                    "images": job.images,
                    "result": job.result,
                }
            }
        )


def _own_job(request: SignedRequest, job_id: str) -> Job:
    job = job_of(request.user, job_id)
    if job is None:
        raise ApiError("Job not found", code="not_found", status_code=404)
    return job
