"""Cargos (workload blueprints), Islands (compute devices), Jobs, and the compute
exchange: owners' asks, users' saved bids, snapshots of the market."""

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

from core.money import MONEY


class Cargo(models.Model):
    """A workload blueprint ("workload" in the API)."""

    class Runtime(models.TextChoices):
        CONTAINER = "container"
        WASM = "wasm"
        ONNX = "onnx"
        LLMCPP = "llmcpp"
        DIFFUSERS = "diffusers"
        COREML = "coreml"

    class Category(models.TextChoices):
        LLM = "llm"
        IMAGE = "image"
        AUDIO = "audio"
        VISION = "vision"
        TEXT = "text"
        UTILITY = "utility"

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=16, choices=Category.choices)
    runtime_type = models.CharField(max_length=16, choices=Runtime.choices)
    onnx_task_type = models.CharField(max_length=50, null=True, blank=True)
    price_per_job = models.DecimalField(**MONEY)
    required_vram_mb = models.PositiveIntegerField(default=0)
    required_ram_mb = models.PositiveIntegerField(default=0)
    time_limit_seconds = models.PositiveIntegerField(default=300)
    input_schema = models.JSONField(null=True, blank=True)
    # Runtime-specific fields copied into assignments: container_image, wasm_url,
    # model_url, model_hash, model_context_size, onnx_model_url, sandbox_tier, ...
    spec = models.JSONField(default=dict, blank=True)
    is_enabled = models.BooleanField(default=True)
    is_approved = models.BooleanField(default=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Island(models.Model):
    """A compute device. Its primary key is the ``host_id`` the Island generated."""

    class Status(models.TextChoices):
        ONLINE = "online"
        OFFLINE = "offline"

    class Platform(models.TextChoices):
        DESKTOP = "desktop"
        IOS = "ios"
        ANDROID = "android"

    id = models.UUIDField(primary_key=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="islands",
    )
    name = models.CharField(max_length=100, blank=True)
    platform = models.CharField(max_length=16, choices=Platform.choices, default=Platform.DESKTOP)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OFFLINE)
    region = models.CharField(max_length=50, blank=True)
    agent_version = models.CharField(max_length=50, blank=True)
    # {gpu_model, gpu_vram_mb, cpu_cores, ram_mb, region}
    capabilities = models.JSONField(default=dict, blank=True)
    runtimes = models.JSONField(default=list, blank=True)
    # Latest heartbeat sections: system, gpus, cache, performance_estimates, ...
    metrics = models.JSONField(default=dict, blank=True)
    warm_workloads = models.JSONField(default=list, blank=True)
    asking_prices = models.JSONField(default=dict, blank=True)
    active_jobs = models.PositiveIntegerField(default=0)
    max_concurrent_jobs = models.PositiveIntegerField(default=1)
    karma = models.IntegerField(default=0)
    pending_minutes = models.PositiveIntegerField(default=0)
    # Seconds of completed compute short of a whole pending minute; they join the next
    # job's time instead of being thrown away (compute.services.karma.record_completed_job).
    pending_seconds = models.PositiveSmallIntegerField(default=0)
    jobs_completed = models.PositiveIntegerField(default=0)
    jobs_failed = models.PositiveIntegerField(default=0)
    earnings = models.DecimalField(**MONEY, default=Decimal(0))
    suspended = models.BooleanField(default=False)
    cooldown_until = models.DateTimeField(null=True, blank=True)
    registered_at = models.DateTimeField(default=timezone.now)
    paired_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True, db_index=True)
    went_offline_at = models.DateTimeField(null=True, blank=True)
    offline_graceful = models.BooleanField(default=False)
    disconnect_penalized = models.BooleanField(default=False)
    # The public half of the key this Island signs its NATS connections with (sail.keys):
    # bound by its first pairing request, or made at a mobile claim. None for a field
    # Island (the shared user:password of upstream agents).
    nkey = models.CharField(max_length=56, unique=True, null=True, blank=True)
    # Per-Island credential (mobile token): hash only.
    token_hash = models.CharField(max_length=64, blank=True)
    token_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "suspended"])]

    def __str__(self) -> str:
        return self.name or str(self.id)


class Job(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        QUEUED = "queued"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"
        TIMEOUT = "timeout"

    FINAL = frozenset({"completed", "failed", "cancelled", "timeout"})

    class QueueReason(models.TextChoices):
        """Why a waiting job has no Island, from placement's own filters
        (compute.services.placement.IslandIndex.waiting_reason); the labels are what
        clients are told."""

        NO_ISLAND = "no_island", "no online Island can run this Cargo"
        OVER_BUDGET = "over_budget", "the Islands that can run this Cargo ask more than its budget"
        BUSY = "busy", "all the Islands that can run this Cargo are busy"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs"
    )
    cargo = models.ForeignKey(Cargo, on_delete=models.PROTECT, related_name="jobs")
    # The key it was submitted with (its usage and limits: portal.keys); none from a session.
    api_key = models.ForeignKey(
        "portal.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        db_index=False,
    )  # fmt: skip
    island = models.ForeignKey(
        Island, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    priority = models.PositiveSmallIntegerField(default=0)
    input = models.JSONField(default=dict)
    output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    last_seq = models.PositiveIntegerField(default=0)
    # Output chunks that held text: an Island that reports no usage (upstream agents)
    # sends one per token, so this is its completion's token count.
    token_chunks = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    budget = models.DecimalField(**MONEY, null=True, blank=True)
    price = models.DecimalField(**MONEY, null=True, blank=True)
    credits_used = models.DecimalField(**MONEY, null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    excluded_islands = models.JSONField(default=list, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Placement prefers Islands of this region (blank: the coordinator's default).
    region = models.CharField(max_length=50, blank=True)
    # Output chunks that arrived ahead of a missing seq, {"<seq>": chunk}; merged into
    # ``output`` as soon as the gap fills (compute.services.jobs.merge_chunks).
    pending_chunks = models.JSONField(default=dict, blank=True)
    # Images the Island sent ({data, format, width, height, seed?}).
    images = models.JSONField(default=list, blank=True)
    # A Cargo's structured output besides its text (OCR: lines with their boxes), and what
    # the Island reported spending beyond tokens ({milliseconds, pixels}), from its
    # ``succeeded``.
    result = models.JSONField(null=True, blank=True)
    metered = models.JSONField(default=dict, blank=True)
    # Over this instant a running job becomes ``timeout`` (assigned_at + Cargo time limit).
    deadline_at = models.DateTimeField(null=True, blank=True)
    # While it waits (pending or queued): why, as placement last found it, and the instant
    # it gives up (``timeout``, its hold released): queue_timeout_seconds after it was
    # queued, again after each requeue (compute.services.waiting).
    queue_reason = models.CharField(max_length=16, choices=QueueReason.choices, blank=True)
    queue_timeout_seconds = models.PositiveIntegerField(null=True, blank=True)
    queue_deadline_at = models.DateTimeField(null=True, blank=True)
    # Batch jobs (compute.services.batches): the parent holds the batch's settings
    # ({merge_strategy, fail_mode, max_parallelism}); each child its parent and index.
    batch = models.JSONField(null=True, blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    batch_index = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "-priority", "created_at"]),
            models.Index(fields=["island", "status"], name="job_island_status"),
            models.Index(fields=["user", "status"], name="job_user_status"),
            # A key's jobs of the last minute (its jobs-per-minute limit).
            models.Index(
                fields=["api_key", "created_at"],
                name="job_api_key_created",
                condition=models.Q(api_key__isnull=False),
            ),
            # Whether a new job would overtake a queued one (every submission asks).
            models.Index(
                fields=["cargo", "-priority"],
                name="job_queued_by_cargo",
                condition=models.Q(status="queued"),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "idempotency_key"], name="unique_job_idempotency_key"
            ),
            models.UniqueConstraint(fields=["parent", "batch_index"], name="unique_batch_index"),
        ]


class KarmaEvent(models.Model):
    """Every change of an Island's karma or pending minutes, so history is exact."""

    island = models.ForeignKey(Island, on_delete=models.CASCADE, related_name="karma_events")
    delta = models.IntegerField()
    minutes = models.IntegerField(default=0)
    reason = models.CharField(max_length=32)
    job_id = models.UUIDField(null=True, blank=True)
    karma_after = models.IntegerField()
    pending_minutes_after = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]


# --- the compute exchange -------------------------------------------------------------
class AskingPrice(models.Model):
    """An Island owner's ask for one Cargo, set through the API. It overrides the ask
    the Island sends in its heartbeats (which reflect the Island's config file)."""

    island = models.ForeignKey(Island, on_delete=models.CASCADE, related_name="asks")
    cargo = models.ForeignKey(Cargo, on_delete=models.CASCADE, related_name="asks")
    price = models.DecimalField(**MONEY)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billing_askingprice"  # moved from billing, its table kept
        constraints = [
            models.UniqueConstraint(fields=["island", "cargo"], name="one_ask_per_island_cargo")
        ]


class SavedBid(models.Model):
    """What a consumer is willing to pay per job of a Cargo when a job names no bid."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="bids"
    )
    cargo = models.ForeignKey(Cargo, on_delete=models.CASCADE, related_name="bids")
    bid = models.DecimalField(**MONEY)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billing_savedbid"  # moved from billing, its table kept
        constraints = [models.UniqueConstraint(fields=["user", "cargo"], name="one_bid_per_cargo")]


class RateSnapshot(models.Model):
    """The market for one Cargo at one moment (taken every 5 minutes by Celery beat)."""

    cargo = models.ForeignKey(Cargo, on_delete=models.CASCADE, related_name="rates")
    avg_price = models.DecimalField(**MONEY)
    min_price = models.DecimalField(**MONEY)
    max_price = models.DecimalField(**MONEY)
    num_hosts = models.PositiveIntegerField()
    surge = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billing_ratesnapshot"  # moved from billing, its table and index kept
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["cargo", "-created_at"], name="billing_rat_cargo_i_753852_idx")
        ]
