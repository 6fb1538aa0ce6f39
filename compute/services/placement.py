"""Placement: which Island should run a job (product-notes, "Placement").

Filters: paired, online (by heartbeat age), not suspended, not in cooldown, runtime supported
(for an ONNX Cargo, its task too: compute.capability), RAM and VRAM fit, ask within the
budget, a free job slot, not excluded for this job.
Score 0-100: speed, fit and headroom weighted per runtime, times 0.9, plus up to 10 for
karma. Order: the job's region first, then score, then a warm Cargo, then headroom.
When no Island passes, the same filters say why the job waits
(:meth:`IslandIndex.waiting_reason`: none can run it, too dear, or all busy).

Speed matters (a decision among 10,000 online Islands must stay far under 10 ms), so
decisions run vectorized with numpy over :class:`IslandIndex`, a per-process columnar
copy of the Islands heard from recently, refreshed incrementally from the database (only
rows whose heartbeat is newer than the last refresh). The copy may be a second old: the
dispatcher re-checks the chosen Island under a row lock before it assigns
(:func:`compute.services.dispatch.claim`), so staleness costs a retry with the next
candidate, never a wrong assignment.
"""

import logging
import math
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from django.conf import settings
from django.db.models import Count, QuerySet, TextField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from compute.capability import onnx_tasks
from compute.models import Island, Job
from compute.services import scoring
from compute.services.scoring import RUNTIME_BIT, Candidate, Need

logger = logging.getLogger(__name__)
FULL_TOK_S, FULL_BANDWIDTH_GB_S, FULL_CPU_CORES = 100.0, 1000.0, 32.0
REFRESH_SLACK_SECONDS = 2.0


def _num(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) and number > 0 else 0.0


def _price(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) and number >= 0 else math.nan


def _json(value: Any) -> Any:
    if isinstance(value, str | bytes):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return value


def _epoch(moment: datetime | None) -> float:
    return moment.timestamp() if moment else 0.0


class IslandIndex:
    COLUMNS = {
        "hb": np.float64, "cooldown": np.float64, "online": np.bool_, "suspended": np.bool_,
        "rt": np.int64, "ram": np.float64, "vram": np.float64, "tok": np.float64,
        "bw": np.float64, "cpu": np.float64, "load": np.float64, "maxc": np.float64,
        "karma": np.float64, "region": np.int64, "default_ask": np.float64,
        "any_task": np.bool_,  # an onnx Island that lists no tasks (compute.capability)
    }  # fmt: skip

    @staticmethod
    def rows(islands: QuerySet) -> QuerySet:
        """Only what placement reads: scalar JSON keys extracted by the database, whole
        JSON documents as text for orjson (several times faster than Django's decoding)."""
        return islands.values(
            "id", "status", "owner_id", "suspended", "cooldown_until", "last_heartbeat_at", "region",
            "max_concurrent_jobs", "karma",
            ram_mb=KT("capabilities__ram_mb"), gpu_vram_mb=KT("capabilities__gpu_vram_mb"),
            cpu_cores=KT("capabilities__cpu_cores"), caps_region=KT("capabilities__region"),
            tok_s=KT("metrics__performance_estimates__estimated_llm_tok_s"),
            bandwidth=KT("metrics__performance_estimates__gpu_bandwidth_gb_s"),
            tasks_json=KT("metrics__performance_estimates__onnx_tasks"),
            runtimes_json=Cast("runtimes", TextField()),
            asks_json=Cast("asking_prices", TextField()),
            warm_json=Cast("warm_workloads", TextField()),
        )  # fmt: skip

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.size = 0
        self.capacity = 0
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        self.regions: dict[str, int] = {}
        self.asks: dict[str, np.ndarray] = {}
        self.warm: dict[str, np.ndarray] = {}
        self.tasks: dict[str, np.ndarray] = {}
        self.row_asks: list[frozenset[str]] = []
        self.row_warm: list[frozenset[str]] = []
        self.row_tasks: list[frozenset[str]] = []
        self.cols: dict[str, np.ndarray] = {}
        self._grow(1024)
        self.refreshed_at = 0.0
        self.full_at = 0.0
        self.pid = os.getpid()
        self.refreshing = False
        # Decisions wait for the first load: an empty index would queue every job.
        self.loaded = threading.Event()
        self.first_load = threading.Lock()

    # --- storage
    def _grow(self, capacity: int) -> None:
        def grown(old: np.ndarray | None, dtype: Any, fill: Any) -> np.ndarray:
            new = np.full(capacity, fill, dtype=dtype)
            if old is not None:
                new[: self.capacity] = old
            return new

        for name, dtype in self.COLUMNS.items():
            fill = np.nan if name == "default_ask" else 0
            self.cols[name] = grown(self.cols.get(name), dtype, fill)
        self.asks = {k: grown(v, np.float64, np.nan) for k, v in self.asks.items()}
        self.warm = {k: grown(v, np.bool_, False) for k, v in self.warm.items()}
        self.tasks = {k: grown(v, np.bool_, False) for k, v in self.tasks.items()}
        self.capacity = capacity

    def _slot(self, island_id: str) -> int:
        i = self.pos.get(island_id)
        if i is None:
            if self.size == self.capacity:
                self._grow(self.capacity * 2)
            i = self.pos[island_id] = self.size
            self.ids.append(island_id)
            self.row_asks.append(frozenset())
            self.row_warm.append(frozenset())
            self.row_tasks.append(frozenset())
            self.size += 1
        return i

    def _keyed(self, table: dict[str, np.ndarray], key: str, dtype: Any, fill: Any) -> np.ndarray:
        column = table.get(key)
        if column is None:
            column = table[key] = np.full(self.capacity, fill, dtype=dtype)
        return column

    def put(self, row: dict) -> None:
        """Store one Island row (the values of :meth:`rows`)."""
        self.put_many([row])

    def put_many(self, rows: list[dict]) -> None:
        """Store Island rows; columns are written in one vectorized assignment each."""
        if not rows:
            return
        values: dict[str, list] = {
            name: [] for name in self.COLUMNS if name not in ("load", "default_ask", "any_task")
        }
        for row in rows:
            runtimes = _json(row["runtimes_json"])
            runtimes = runtimes if isinstance(runtimes, list) else []
            region = row["region"] or row["caps_region"] or ""
            values["hb"].append(_epoch(row["last_heartbeat_at"]))
            values["cooldown"].append(_epoch(row["cooldown_until"]))
            values["online"].append(row["status"] == Island.Status.ONLINE)
            # An Island nobody paired never takes a job (its owner would earn nothing,
            # and anyone could run one): it counts as suspended.
            values["suspended"].append(row["suspended"] or row["owner_id"] is None)
            values["rt"].append(
                sum(RUNTIME_BIT.get(r, 0) for r in set(runtimes) if isinstance(r, str))
            )
            values["ram"].append(_num(row["ram_mb"]))
            values["vram"].append(_num(row["gpu_vram_mb"]))
            values["tok"].append(min(1.0, _num(row["tok_s"]) / FULL_TOK_S))
            values["bw"].append(min(1.0, _num(row["bandwidth"]) / FULL_BANDWIDTH_GB_S))
            values["cpu"].append(min(1.0, _num(row["cpu_cores"]) / FULL_CPU_CORES))
            values["maxc"].append(max(1, row["max_concurrent_jobs"] or 1))
            values["karma"].append(row["karma"] or 0)
            values["region"].append(
                self.regions.setdefault(region, len(self.regions)) if region else -1
            )
        asks = [_json(row["asks_json"]) for row in rows]
        warms = [_json(row["warm_json"]) for row in rows]
        tasks = [onnx_tasks(_json(row["tasks_json"])) for row in rows]
        # Parsed above without the lock; decisions wait only for the assignments below.
        with self.lock:
            at = np.array([self._slot(str(row["id"])) for row in rows])
            for name, column in values.items():
                self.cols[name][at] = column
            for i, prices, warm, listed in zip(at.tolist(), asks, warms, tasks, strict=True):
                self._put_asks(i, prices if isinstance(prices, dict) else {})
                self._put_warm(
                    i, frozenset(str(w) for w in warm) if isinstance(warm, list) else frozenset()
                )
                self._put_tasks(i, listed)

    def _put_asks(self, i: int, prices: dict) -> None:
        asks = {str(slug): _price(value) for slug, value in prices.items()}
        self.cols["default_ask"][i] = asks.pop("_default", math.nan)
        for gone in self.row_asks[i] - asks.keys():
            self.asks[gone][i] = np.nan
        for slug, price in asks.items():
            self._keyed(self.asks, slug, np.float64, np.nan)[i] = price
        self.row_asks[i] = frozenset(asks)

    def _put_warm(self, i: int, warm: frozenset[str]) -> None:
        for gone in self.row_warm[i] - warm:
            self.warm[gone][i] = False
        for key in warm:
            self._keyed(self.warm, key, np.bool_, False)[i] = True
        self.row_warm[i] = warm

    def _put_tasks(self, i: int, listed: frozenset[str] | None) -> None:
        self.cols["any_task"][i] = listed is None
        listed = listed or frozenset()
        for gone in self.row_tasks[i] - listed:
            self.tasks[gone][i] = False
        for task in listed:
            self._keyed(self.tasks, task, np.bool_, False)[i] = True
        self.row_tasks[i] = listed

    def task_column(self, task: str) -> np.ndarray:
        """Which rows list the ONNX ``task`` among theirs."""
        column = self.tasks.get(task)
        return column if column is not None else np.zeros(self.capacity, np.bool_)

    # --- loading from the database
    def refresh(self, *, full: bool = False) -> int:
        """Load the Islands heard from since the last refresh (all recent ones if
        ``full``, and those it does not find are forgotten: deleted since, or silent);
        returns how many rows were read."""
        with self.lock:
            now = time.time()
            whole = full or not self.full_at
            if whole:
                since = now - settings.HEARTBEAT_OFFLINE_SECONDS - REFRESH_SLACK_SECONDS
                self.full_at = now
            else:
                since = self.refreshed_at - REFRESH_SLACK_SECONDS
            self.refreshed_at = now
        recent = Island.objects.filter(last_heartbeat_at__gte=datetime.fromtimestamp(since, tz=UTC))
        rows = list(self.rows(recent))
        self.put_many(rows)
        if whole:
            self._forget_all_but({str(row["id"]) for row in rows})
        self._load_running()
        if full:
            self.loaded.set()
        return len(rows)

    def _forget_all_but(self, seen: set[str]) -> None:
        """Rows a full reload did not find leave the decisions (as after a refused claim,
        until a heartbeat brings them back): an Island deleted from the database would
        otherwise look online here until its last heartbeat aged out, and mark its
        Cargos as servable (compute.services.waiting.unservable)."""
        with self.lock:
            gone = [i for i, island_id in enumerate(self.ids) if island_id not in seen]
            self.cols["hb"][gone] = 0.0

    def _load_running(self) -> None:
        """An Island's load is the number of our jobs running on it: exact at once after
        an assignment or an end, where its heartbeat's ``active_jobs`` lags by seconds."""
        jobs = Job.objects.filter(status=Job.Status.RUNNING, island__isnull=False)
        counts = list(
            jobs.values("island_id").annotate(n=Count("id")).values_list("island_id", "n")
        )
        with self.lock:
            load = self.cols["load"]
            load[: self.size] = 0
            for island_id, n in counts:
                if (i := self.pos.get(str(island_id))) is not None:
                    load[i] = n

    def maybe_refresh(self) -> None:
        """Load the index on first use; afterwards refresh it when stale, in a background
        thread (``PLACEMENT_REFRESH_IN_BACKGROUND``) so that no decision waits for it."""
        if not self.loaded.is_set():
            with self.first_load:  # one thread loads; the others wait for it
                if not self.loaded.is_set():
                    self.refresh(full=True)
            return
        due, full = self._due()
        if not due:
            return
        if not settings.PLACEMENT_REFRESH_IN_BACKGROUND:
            self.refresh(full=full)
            return
        with self.lock:
            if self.refreshing:
                return
            self.refreshing = True
        threading.Thread(target=self._refresh_in_background, args=(full,), daemon=True).start()

    def blocking_refresh_due(self) -> bool:
        """Whether :meth:`maybe_refresh` would read the database in the caller's thread
        now (the first load, or a refresh while ``PLACEMENT_REFRESH_IN_BACKGROUND`` is
        off); otherwise it returns at once, at most starting a background refresh."""
        if not self.loaded.is_set():
            return True
        return not settings.PLACEMENT_REFRESH_IN_BACKGROUND and self._due()[0]

    def _due(self) -> tuple[bool, bool]:
        """``(due, full)``: whether a refresh is due, and whether a full reload."""
        now = time.time()
        full = now - self.full_at > settings.PLACEMENT_FULL_RELOAD_SECONDS
        return full or now - self.refreshed_at > settings.PLACEMENT_REFRESH_SECONDS, full

    def _refresh_in_background(self, full: bool) -> None:
        from django.db import connection

        try:
            self.refresh(full=full)
        except Exception:
            logger.exception("placement index refresh failed")
        finally:
            connection.close()
            self.refreshing = False

    # --- what the dispatcher learned
    def note_load(self, island_id: str, load: int) -> None:
        with self.lock:
            i = self.pos.get(str(island_id))
            if i is not None:
                self.cols["load"][i] = load

    def note_unavailable(self, island_id: str) -> None:
        """The database says no (suspended, offline...): skip it until its next heartbeat."""
        with self.lock:
            i = self.pos.get(str(island_id))
            if i is not None:
                self.cols["hb"][i] = 0.0

    # --- decisions
    def choose(self, need: Need, *, limit: int = 5, now: float | None = None) -> list[Candidate]:
        """The best ``limit`` Islands for ``need``, best first."""
        with self.lock:
            return scoring.best(self, need, limit, time.time() if now is None else now)

    def waiting_reason(self, need: Need, *, now: float | None = None) -> str:
        """Why no Island takes ``need`` now, by the filters :meth:`choose` applies: none
        online can run it (runtime, memory, suspended, excluded for the job), those that
        can ask more than its budget, or they are all busy (no free slot, in cooldown).
        ``busy`` too when one looks free here: its row lock said otherwise."""
        with self.lock:
            found = scoring.filter_rows(self, need, time.time() if now is None else now)
            if found is None or not found.fits.any():
                return Job.QueueReason.NO_ISLAND
            if not (found.fits & found.affordable).any():
                return Job.QueueReason.OVER_BUDGET
            return Job.QueueReason.BUSY


_index: IslandIndex | None = None
_index_lock = threading.Lock()


def index() -> IslandIndex:
    """This process's index (one per process; rebuilt after a fork)."""
    global _index
    with _index_lock:
        if _index is None or _index.pid != os.getpid():
            _index = IslandIndex()
        return _index


def reset_index() -> None:
    """Forget every cached Island (tests, and after bulk changes)."""
    global _index
    with _index_lock:
        _index = None


def choose(need: Need, *, limit: int = 5) -> list[Candidate]:
    idx = index()
    idx.maybe_refresh()
    return idx.choose(need, limit=limit)


def waiting_reason(need: Need) -> str:
    """:meth:`IslandIndex.waiting_reason` on this process's index."""
    idx = index()
    idx.maybe_refresh()
    return idx.waiting_reason(need)
