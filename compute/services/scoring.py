"""The decision of placement over its index (compute.services.placement.IslandIndex):
the filters, vectorized with numpy over the stored rows, and the score of the Islands
that pass them (0-100: speed, fit and headroom weighted per runtime, times 0.9, plus up to
10 for karma); the order: the job's region first, then score, a warm Cargo, headroom."""

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from django.conf import settings

from compute.capability import onnx_task
from compute.models import Cargo, Job

if TYPE_CHECKING:
    from compute.services.placement import IslandIndex

RUNTIMES = [choice.value for choice in Cargo.Runtime]
RUNTIME_BIT = {name: 1 << i for i, name in enumerate(RUNTIMES)}
# (speed, fit, headroom) weights per runtime.
WEIGHTS = {
    "llmcpp": (0.50, 0.35, 0.15),
    "container": (0.30, 0.40, 0.30),
    "wasm": (0.25, 0.40, 0.35),
    "coreml": (0.45, 0.40, 0.15),
    "onnx": (0.45, 0.40, 0.15),
    "diffusers": (0.45, 0.40, 0.15),
}
# Which throughput estimate stands for speed, first one the Island reports wins.
SPEED_SOURCES = {
    "llmcpp": ("tok", "bw", "cpu"),
    "container": ("bw", "tok", "cpu"),
    "diffusers": ("bw", "cpu"),
    "onnx": ("bw", "cpu"),
    "coreml": ("bw", "tok", "cpu"),
    "wasm": ("cpu",),
}
# Memory use of the job on the Island -> fit: a sweet spot between 50 % and 80 %;
# a tiny job on a huge Island wastes it, one near 95 % risks running out.
FIT_USE = [0.0, 0.2, 0.5, 0.8, 0.95, 1.0]
FIT_SCORE = [0.1, 0.2, 1.0, 1.0, 0.1, 0.0]
KARMA_FOR_FULL_BONUS = 100


@dataclass(frozen=True)
class Need:
    """What a job needs from an Island."""

    runtime: str
    slug: str
    cargo_id: int
    ram_mb: int = 0
    vram_mb: int = 0
    task: str = ""  # an ONNX Cargo's onnx_task_type (compute.capability.onnx_task)
    budget: float = math.inf
    region: str = ""
    excluded: frozenset[str] = field(default_factory=frozenset)
    # The ask of an Island that states none (the Cargo's price; NaN: within any budget).
    list_price: float = math.nan
    # Owners' asks set through the API (compute.models.AskingPrice), {island id: price}; they
    # win over the asks of heartbeats (compute.selectors.market.ask_of).
    asks: dict[str, float] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def for_job(cls, job: Job, *, asks: dict | None = None) -> "Need":
        budget = job.budget if job.budget is not None else job.cargo.price_per_job
        return cls.of(job.cargo, budget=budget, region=job.region,
                      excluded=job.excluded_islands or [], asks=asks or {})  # fmt: skip

    @classmethod
    def of(cls, cargo: Cargo, *, budget: Any, region: str, excluded: Any, asks: dict) -> "Need":
        return cls(
            runtime=cargo.runtime_type,
            slug=cargo.slug,
            cargo_id=cargo.pk,
            ram_mb=cargo.required_ram_mb,
            vram_mb=cargo.required_vram_mb,
            task=onnx_task(cargo),
            budget=float(budget),
            region=region or settings.PLACEMENT_REGION,
            excluded=frozenset(str(i) for i in excluded),
            list_price=float(cargo.price_per_job),
            asks={str(island): float(price) for island, price in asks.items()},
        )


@dataclass(frozen=True)
class Candidate:
    island_id: str
    score: int
    ask: float | None  # None: no ask and no list price known (within any budget)
    warm: bool
    same_region: bool


class Filtered(NamedTuple):
    """Placement's filters over an index's rows: the columns, the effective asks, and
    three masks: may run the job at all, within its budget, has room now."""

    columns: dict[str, np.ndarray]
    ask: np.ndarray
    fits: np.ndarray
    affordable: np.ndarray
    free: np.ndarray


def filter_rows(index: "IslandIndex", need: Need, now: float) -> "Filtered | None":
    """The filters over the stored rows (None when no Island could ever be chosen)."""
    n, c = index.size, {k: v[: index.size] for k, v in index.cols.items()}
    bit = RUNTIME_BIT.get(need.runtime)
    if not n or bit is None:
        return None
    # The effective ask (compute.selectors.market.ask_of): the owner's API ask, else the
    # heartbeat's ask for the Cargo, else its ``_default``, else the list price.
    ask = c["default_ask"]
    if need.slug in index.asks:
        own = index.asks[need.slug][:n]
        ask = np.where(np.isnan(own), ask, own)
    ask = np.where(np.isnan(ask), need.list_price, ask)  # a new array: never a view
    for island_id, price in need.asks.items():
        if (i := index.pos.get(island_id)) is not None and i < n:
            ask[i] = price
    fits = (
        c["online"]
        & (c["hb"] >= now - settings.HEARTBEAT_OFFLINE_SECONDS)
        & ~c["suspended"]
        & ((c["rt"] & bit) != 0)
        & (c["ram"] >= need.ram_mb)
        & (c["vram"] >= need.vram_mb)
    )
    if need.task:
        fits &= c["any_task"] | index.task_column(need.task)[:n]
    for island_id in need.excluded:
        if (i := index.pos.get(island_id)) is not None and i < n:
            fits[i] = False
    affordable = ~(ask > need.budget)  # no ask (NaN) is within any budget
    free = (c["cooldown"] <= now) & (c["load"] < c["maxc"])
    return Filtered(c, ask, fits, affordable, free)


def best(index: "IslandIndex", need: Need, limit: int, now: float) -> list[Candidate]:
    """The best ``limit`` Islands of ``index`` for ``need``, best first."""
    found = filter_rows(index, need, now)
    if found is None:
        return []
    n, c, ask = index.size, found.columns, found.ask
    rows = np.flatnonzero(found.fits & found.affordable & found.free)
    if not rows.size:
        return []
    score, headroom = score_of(need, {k: v[rows] for k, v in c.items()})
    warm = np.zeros(rows.size, dtype=np.bool_)
    for key in (need.slug, str(need.cargo_id)):
        if key in index.warm:
            warm |= index.warm[key][:n][rows]
    code = index.regions.get(need.region) if need.region else None
    same = c["region"][rows] == code if code is not None else np.zeros(rows.size, np.bool_)
    key = same * 1e6 + score * 1e3 + warm * 100 + headroom * 10
    top = np.argpartition(-key, limit - 1)[:limit] if rows.size > limit else np.arange(rows.size)
    top = top[np.argsort(-key[top], kind="stable")]
    return [
        Candidate(
            island_id=index.ids[rows[t]],
            score=int(score[t]),
            ask=None if math.isnan(ask[rows[t]]) else float(ask[rows[t]]),
            warm=bool(warm[t]),
            same_region=bool(same[t]),
        )
        for t in top
    ]


def score_of(need: Need, c: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    sources = SPEED_SOURCES.get(need.runtime, ("cpu",))
    speed = c[sources[-1]]
    for name in reversed(sources[:-1]):
        speed = np.where(c[name] > 0, c[name], speed)
    if need.vram_mb:
        use = need.vram_mb / np.maximum(c["vram"], 1)
    elif need.ram_mb:
        use = need.ram_mb / np.maximum(c["ram"], 1)
    else:
        use = np.full(speed.shape, 0.5)
    fit = np.interp(use, FIT_USE, FIT_SCORE)
    headroom = 1 - c["load"] / c["maxc"]
    w_speed, w_fit, w_head = WEIGHTS.get(need.runtime, WEIGHTS["container"])
    base = 100 * (w_speed * speed + w_fit * fit + w_head * headroom)
    bonus = np.clip(c["karma"], 0, KARMA_FOR_FULL_BONUS) * (10 / KARMA_FOR_FULL_BONUS)
    return np.rint(0.9 * base + bonus), headroom
