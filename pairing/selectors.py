"""Reads for the pairing pages and the Your Islands cards.

Karma levels (1 karma ≈ 1 hour of successful compute, see product-notes): the thresholds
are 10 (payouts of earnings unlock: the monetization threshold), 25, 50, 100, 250, 500
and 1000. A card shows the level reached and a bar of the way to the next threshold.
"""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.conf import settings
from django.utils import timezone

from compute.models import Island
from pairing.models import MobilePairingSession
from portal.models import User

KARMA_LEVELS = (10, 25, 50, 100, 250, 500, 1000)
RUNTIME_LABELS = {
    "onnx": "ONNX Runtime",
    "coreml": "CoreML",
    "container": "Container",
    "wasm": "WebAssembly",
    "llmcpp": "llama.cpp",
    "diffusers": "Diffusers",
}


@dataclass(frozen=True)
class KarmaProgress:
    karma: int
    level: int
    next_at: int | None
    percent: int


def karma_progress(karma: int) -> KarmaProgress:
    level = sum(1 for threshold in KARMA_LEVELS if karma >= threshold)
    if level == len(KARMA_LEVELS):
        return KarmaProgress(karma, level, None, 100)
    floor = KARMA_LEVELS[level - 1] if level else 0
    ceiling = KARMA_LEVELS[level]
    percent = max(0, min(100, (karma - floor) * 100 // (ceiling - floor)))
    return KarmaProgress(karma, level, ceiling, percent)


def is_online(island: Island, now: datetime | None = None) -> bool:
    """Online when the last heartbeat is fresh and the Island did not sign off since."""
    if island.last_heartbeat_at is None:
        return island.status == Island.Status.ONLINE
    now = now or timezone.now()
    offline_after = getattr(settings, "HEARTBEAT_OFFLINE_SECONDS", 30)
    fresh = (now - island.last_heartbeat_at).total_seconds() <= offline_after
    signed_off = island.status == Island.Status.OFFLINE and island.offline_graceful
    return fresh and not signed_off


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "never"
    seconds = max(0, int(((now or timezone.now()) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _gb(mb: object) -> str | None:
    if not isinstance(mb, int | float) or isinstance(mb, bool) or mb <= 0:
        return None
    gb = mb / 1024
    return f"{gb:.0f} GB" if gb >= 10 else f"{gb:.1f} GB"


def hardware(island: Island) -> dict:
    caps = island.capabilities if isinstance(island.capabilities, dict) else {}
    cores = caps.get("cpu_cores")
    return {
        "gpu_model": caps.get("gpu_model") or None,
        "vram": _gb(caps.get("gpu_vram_mb")),
        "cpu_cores": cores if isinstance(cores, int) and not isinstance(cores, bool) else None,
        "ram": _gb(caps.get("ram_mb")),
        "device_model": caps.get("model") or None,
    }


@dataclass(frozen=True)
class IslandCard:
    island: Island
    online: bool
    hardware: dict
    karma: KarmaProgress
    last_heartbeat: str
    runtime_label: str


def island_card(island: Island, now: datetime | None = None) -> IslandCard:
    now = now or timezone.now()
    runtime = island.runtimes[0] if island.runtimes else "container"
    return IslandCard(
        island=island,
        online=is_online(island, now),
        hardware=hardware(island),
        karma=karma_progress(island.karma),
        last_heartbeat=ago(island.last_heartbeat_at, now),
        runtime_label=RUNTIME_LABELS.get(runtime, runtime),
    )


def island_cards(*, user: User) -> list[IslandCard]:
    """Every Island of the user, in one query."""
    now = timezone.now()
    islands = Island.objects.filter(owner=user).order_by("paired_at", "registered_at", "id")
    return [island_card(island, now) for island in islands]


def owned_island(*, user: User, island_id: UUID | str) -> Island | None:
    return Island.objects.filter(owner=user, pk=island_id).first()


def mobile_session_of(*, user: User, session_id: UUID | str) -> MobilePairingSession | None:
    return MobilePairingSession.objects.filter(user=user, pk=session_id).first()
