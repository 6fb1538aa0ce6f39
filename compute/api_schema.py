"""The shapes of the compute API's answers, for the OpenAPI document only (the views
write them with the ``present_*`` functions of compute.api and compute.jobs_api;
tests/portal/test_api_schema_answers.py checks real answers against these)."""

from rest_framework import serializers

from compute.models import Cargo, Island, Job
from portal.api.serializers import PageMeta, envelope


class Usage(serializers.Serializer):
    prompt_tokens = serializers.IntegerField(allow_null=True)
    completion_tokens = serializers.IntegerField(allow_null=True)
    total_tokens = serializers.IntegerField(allow_null=True)
    credits_used = serializers.FloatField(allow_null=True)


class QueueOut(serializers.Serializer):
    """Why a waiting job (pending or queued) waits, and when it gives up."""

    reason = serializers.ChoiceField(choices=Job.QueueReason.choices, allow_null=True)
    message = serializers.CharField()
    timeout_seconds = serializers.IntegerField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)


class JobOut(serializers.Serializer):
    id = serializers.UUIDField()
    workload_id = serializers.IntegerField()
    workload_slug = serializers.CharField()
    status = serializers.ChoiceField(choices=Job.Status.choices)
    priority = serializers.IntegerField()
    input = serializers.JSONField()
    output = serializers.CharField(allow_blank=True)
    usage = Usage()
    island_id = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    queue = QueueOut(
        allow_null=True,
        help_text="Extension. While the job waits for an Island: why (no online Island can "
        "run its Cargo, those that can ask more than its budget, or all are busy) and when "
        "it gives up (status timeout, hold released); null once it left the queue.",
    )


JobResponse = envelope("JobResponse", JobOut())


JobListResponse = envelope("JobListResponse", JobOut(many=True), meta=PageMeta())


class JobOutput(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Job.Status.choices)
    output = serializers.CharField(allow_blank=True)
    images = serializers.ListField(child=serializers.JSONField())


JobOutputResponse = envelope("JobOutputResponse", JobOutput())


class CargoOut(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    category = serializers.ChoiceField(choices=Cargo.Category.choices)
    runtime_type = serializers.ChoiceField(choices=Cargo.Runtime.choices)
    onnx_task_type = serializers.CharField(allow_null=True)
    price_per_job = serializers.FloatField()
    required_vram_mb = serializers.IntegerField()
    required_ram_mb = serializers.IntegerField()


class CargoListResponse(serializers.Serializer):
    cargos = CargoOut(many=True)
    count = serializers.IntegerField()


class WorkloadOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    category = serializers.ChoiceField(choices=Cargo.Category.choices)
    runtime_type = serializers.ChoiceField(choices=Cargo.Runtime.choices)
    required_vram_mb = serializers.IntegerField()
    required_ram_mb = serializers.IntegerField()
    price_per_job = serializers.FloatField()
    time_limit_seconds = serializers.IntegerField()
    input_schema = serializers.JSONField(allow_null=True)
    is_enabled = serializers.BooleanField()


WorkloadResponse = envelope("WorkloadResponse", WorkloadOut())


WorkloadListResponse = envelope("WorkloadListResponse", WorkloadOut(many=True), meta=PageMeta())


class HostOut(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=Island.Status.choices)
    region = serializers.CharField(allow_blank=True)
    capabilities = serializers.DictField()
    karma_score = serializers.IntegerField()
    last_heartbeat_at = serializers.DateTimeField(allow_null=True)


HostResponse = envelope("HostResponse", HostOut())


HostListResponse = envelope("HostListResponse", HostOut(many=True), meta=PageMeta())


class KarmaOut(serializers.Serializer):
    host_id = serializers.UUIDField()
    karma_score = serializers.IntegerField()
    pending_minutes = serializers.IntegerField()
    minutes_per_karma = serializers.IntegerField()
    monetization_threshold = serializers.IntegerField()
    monetization_unlocked = serializers.BooleanField()
    jobs_completed = serializers.IntegerField()
    jobs_failed = serializers.IntegerField()


KarmaResponse = envelope("KarmaResponse", KarmaOut())


class KarmaEventOut(serializers.Serializer):
    id = serializers.IntegerField()
    delta = serializers.IntegerField()
    minutes = serializers.IntegerField()
    reason = serializers.CharField()
    karma_after = serializers.IntegerField()
    pending_minutes_after = serializers.IntegerField()
    created_at = serializers.DateTimeField()


KarmaHistoryResponse = envelope("KarmaHistoryResponse", KarmaEventOut(many=True), meta=PageMeta())
