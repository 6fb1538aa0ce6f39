"""Batch jobs: ``POST /jobs/batch`` and ``GET /jobs/:id/batch-status`` (thin views over
compute.services.batches). Their answers are not wrapped in ``data``: the upstream SDK
reads them as they are."""

from collections import Counter
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from compute.jobs_api import iso
from compute.models import Job
from compute.selectors.jobs import job_of
from compute.services import batches, idempotency
from core import tx
from core.errors import ApiError
from portal.api.base import InputSerializer, SignedRequest, validated
from portal.models import User


class BatchInput(InputSerializer):
    workload = serializers.CharField(max_length=100)
    inputs = serializers.ListField(
        child=serializers.JSONField(),
        min_length=1,
        max_length=batches.MAX_CHILDREN,
        help_text="One job input per child, in index order (each as the Cargo's input).",
    )
    merge_strategy = serializers.ChoiceField(choices=batches.MERGE_STRATEGIES, default="concat")
    fail_mode = serializers.ChoiceField(choices=batches.FAIL_MODES, default="best_effort")
    max_parallelism = serializers.IntegerField(
        min_value=1, max_value=batches.MAX_CHILDREN, required=False, allow_null=True,
        help_text="At most this many children wait for or run on an Island at once "
        "(default: all).",
    )  # fmt: skip
    region = serializers.CharField(max_length=50, required=False, default="")
    bid_price = serializers.DecimalField(
        max_digits=20, decimal_places=6, min_value=Decimal(0), required=False, allow_null=True,
        help_text="The most each child may cost (a decimal string or number, at most 6 "
        "places). Default: as for a job.",
    )  # fmt: skip


class BatchChildOut(serializers.Serializer):
    id = serializers.UUIDField()
    batch_index = serializers.IntegerField()
    state = serializers.CharField(
        help_text="succeeded, failed (failed or timeout), cancelled, pending, queued or running."
    )
    error = serializers.CharField(allow_null=True)
    host_id = serializers.UUIDField(allow_null=True)


class BatchConfigOut(serializers.Serializer):
    chunk_count = serializers.IntegerField()
    merge_strategy = serializers.ChoiceField(choices=batches.MERGE_STRATEGIES)
    fail_mode = serializers.ChoiceField(choices=batches.FAIL_MODES)
    max_parallelism = serializers.IntegerField(allow_null=True)
    completed = serializers.IntegerField(help_text="Children that succeeded.")
    failed = serializers.IntegerField(help_text="Children that failed or timed out.")


class BatchOut(serializers.Serializer):
    id = serializers.UUIDField(help_text="The parent job (GET /jobs/:id: its merged output).")
    state = serializers.CharField(help_text="The parent's state, as parent_state says it.")
    workload = serializers.CharField()
    batch = BatchConfigOut()
    children = BatchChildOut(many=True)
    created_at = serializers.DateTimeField()


class BatchStatusOut(serializers.Serializer):
    parent_id = serializers.UUIDField()
    parent_state = serializers.CharField(
        help_text="running while a child is unfinished, then succeeded, failed or cancelled."
    )
    chunk_count = serializers.IntegerField()
    merge_strategy = serializers.ChoiceField(choices=batches.MERGE_STRATEGIES)
    fail_mode = serializers.ChoiceField(choices=batches.FAIL_MODES)
    child_states = serializers.DictField(
        child=serializers.IntegerField(), help_text="How many children are in each state."
    )
    children = BatchChildOut(many=True)


def _children(parent: Job) -> list[Job]:
    return list(parent.children.order_by("batch_index"))


def present_batch(parent: Job) -> dict:
    children, config = _children(parent), parent.batch or {}
    counts = Counter(batches.batch_state(child.status) for child in children)
    return {
        "id": str(parent.pk),
        "state": batches.batch_state(parent.status),
        "workload": parent.cargo.slug,
        "batch": {
            "chunk_count": len(children),
            "merge_strategy": config["merge_strategy"],
            "fail_mode": config["fail_mode"],
            "max_parallelism": config.get("max_parallelism"),
            "completed": counts["succeeded"],
            "failed": counts["failed"],
        },
        "children": [batches.present_child(child) for child in children],
        "created_at": iso(parent.created_at),
    }


def present_status(parent: Job) -> dict:
    children, config = _children(parent), parent.batch or {}
    return {
        "parent_id": str(parent.pk),
        "parent_state": batches.batch_state(parent.status),
        "chunk_count": len(children),
        "merge_strategy": config["merge_strategy"],
        "fail_mode": config["fail_mode"],
        "child_states": dict(Counter(batches.batch_state(child.status) for child in children)),
        "children": [batches.present_child(child) for child in children],
    }


class BatchView(APIView):
    @extend_schema(
        summary="Submit a batch: one child job per input, merged into the parent's output "
        "(Idempotency-Key supported)",
        description="Every child is an ordinary job of the Cargo (placed, billed, streamed, "
        "cancellable); their holds are taken together at submission (402 when the balance "
        "cannot cover them all). The parent (GET /jobs/:id) ends once every child ended: "
        "completed with the children's outputs merged in index order (concat: one after "
        "another; flatten: one JSON array of their items; a child that did not complete "
        "adds nothing) when every child completed (fail_fast) or at least one did "
        "(best_effort), failed otherwise. fail_fast cancels the other children when one "
        "fails; DELETE /jobs/:id of the parent cancels its unfinished children. The batch "
        "counts as one job against the concurrent-job quota.",
        request=BatchInput,
        responses={201: BatchOut},
    )
    def post(self, request: SignedRequest) -> Response:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return Response(
                _create(request.user, request.data, None), status=status.HTTP_201_CREATED
            )
        code, body, replayed = tx.sync(
            _once, request.user, request.data, idempotency.check_key(key)
        )
        return Response(
            body, status=code, headers={"Idempotent-Replayed": "true"} if replayed else {}
        )


SCOPE = "POST /jobs/batch"


async def _once(db: tx.Db, user: User, data: Any, key: str) -> tuple[int, Any, bool]:
    """The batch made once per ``Idempotency-Key``: a retry gets the first answer again
    (compute.services.idempotency), and the parent row keeps the key as a fallback."""

    async def create() -> tuple[int, Any]:
        return status.HTTP_201_CREATED, await db.call(_create, user, data, key)

    return await idempotency.run_once(
        db, user_id=user.pk, key=key, scope=SCOPE, body=data, run=create
    )


def _create(user: User, data: Any, key: str | None) -> dict:
    fields = validated(BatchInput, data)
    parent = batches.submit_batch(
        user=user,
        workload=fields["workload"],
        inputs=fields["inputs"],
        merge_strategy=fields["merge_strategy"],
        fail_mode=fields["fail_mode"],
        max_parallelism=fields.get("max_parallelism"),
        region=fields["region"],
        bid=fields.get("bid_price"),
        idempotency_key=key,
    )
    return present_batch(parent)


class BatchStatusView(APIView):
    @extend_schema(summary="The progress of a batch", responses=BatchStatusOut)
    def get(self, request: SignedRequest, job_id: str) -> Response:
        parent = job_of(request.user, job_id)
        if parent is None or parent.batch is None:
            raise ApiError("Batch not found", code="not_found", status_code=404)
        return Response(present_status(parent))
