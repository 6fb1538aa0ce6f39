"""What Islands report about jobs: the state machine, duplicates and reordering, and
the client events on jobs.{id}.events (compute.services.jobs, compute.job_events)."""

import asyncio
import threading
from datetime import timedelta

import nats
import orjson
import pytest
from django.conf import settings
from django.utils import timezone

from compute import job_events as handlers
from compute.models import Job
from compute.services import jobs, lifecycle
from sail.client import credentials
from sail.registry import Incoming
from sail.schemas import Invalid
from tests.compute.jobs_support import island, job_events, running_job

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("streams")]


@pytest.fixture
def host(db):
    """An online Island."""
    return island()


@pytest.fixture
def job(chat, host) -> Job:
    """A job just assigned to ``host``."""
    return running_job(chat, host)


def out(job, seq, chunk, is_final=False) -> dict:
    return {"job_id": str(job.pk), "seq": seq, "chunk": chunk, "is_final": is_final}


def status(job, state, **extra) -> dict:
    return {"job_id": str(job.pk), "state": state, "timestamp": 1, **extra}


def test_started_sets_started_at_once_and_keeps_the_job_running(job, host):
    assert handlers.on_status(str(host.pk), status(job, "started")) is True
    job.refresh_from_db()
    first = job.started_at
    assert job.status == "running"
    assert first is not None
    assert handlers.on_status(str(host.pk), status(job, "started")) is False
    handlers.on_status(str(host.pk), status(job, "streaming"))
    job.refresh_from_db()
    assert (job.status, job.started_at) == ("running", first)


def test_output_is_appended_in_seq_order_even_when_chunks_arrive_out_of_order(job, host):
    for seq, chunk in [(2, " world"), (1, "Hello"), (4, "!"), (3, ",")]:
        handlers.on_output(str(host.pk), out(job, seq, chunk))
    job.refresh_from_db()
    assert (job.output, job.last_seq, job.pending_chunks) == ("Hello world,!", 4, {})


def test_a_duplicate_chunk_is_never_applied_twice(job, host):
    for seq, chunk in [(1, "a"), (1, "a"), (3, "c"), (3, "c"), (2, "b"), (2, "b"), (1, "a")]:
        handlers.on_output(str(host.pk), out(job, seq, chunk))
    job.refresh_from_db()
    assert job.output == "abc"


def test_a_batch_for_several_jobs_applies_each_jobs_chunks_to_it_alone(chat, job, host):
    other, elsewhere = running_job(chat, host), running_job(chat, island())
    chunks = [out(job, 1, "a"), out(other, 1, "x"), out(job, 2, "b"), out(elsewhere, 1, "!"),
              out(other, 2, "y")]  # fmt: skip
    assert jobs.apply_output(host_id=str(host.pk), chunks=chunks) == 4
    outputs = {j.pk: j.output for j in Job.objects.filter(pk__in=[job.pk, other.pk, elsewhere.pk])}
    assert outputs == {job.pk: "ab", other.pk: "xy", elsewhere.pk: ""}


def test_a_batch_with_duplicates_and_gaps_applies_once(job, host):
    chunks = [
        {**out(job, s, c), "host_id": str(host.pk)}
        for s, c in [(3, "c"), (1, "a"), (3, "c"), (2, "b")]
    ]
    assert jobs.apply_output(host_id=str(host.pk), chunks=chunks) == 3
    assert jobs.apply_output(host_id=str(host.pk), chunks=chunks) == 0
    job.refresh_from_db()
    assert job.output == "abc"


def test_token_events_come_in_seq_order_then_done_with_usage(job, host):
    hid = str(host.pk)
    handlers.on_status(hid, status(job, "started"))
    for seq, chunk in [(2, "b"), (1, "a"), (3, "c"), (4, "")]:
        handlers.on_output(hid, out(job, seq, chunk, is_final=seq == 4))
    usage = {"prompt_tokens": 5, "completion_tokens": 3}
    assert handlers.on_status(hid, status(job, "succeeded", usage=usage)) is True
    job.refresh_from_db()
    assert job.status == "completed"
    assert job.completed_at is not None
    assert (job.prompt_tokens, job.completion_tokens, job.credits_used) == (
        5,
        3,
        job.price or job.budget,
    )
    events = job_events(job.pk)
    tokens = [e for e in events if e["type"] == "token"]
    assert [(e["seq"], e["content"]) for e in tokens] == [(1, "a"), (2, "b"), (3, "c"), (4, "")]
    assert events[-1] == {"type": "done", "job_id": str(job.pk),
                          "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}  # fmt: skip
    assert [e["state"] for e in events if e["type"] == "status"] == ["running", "completed"]


def test_an_island_that_reports_no_usage_has_its_tokens_counted_from_its_chunks(job, host):
    """GIVEN an upstream agent: one output chunk per token, an empty final chunk, and a
    ``succeeded`` without usage. THEN the job and its ``done`` event count the tokens."""
    hid = str(host.pk)
    for seq, chunk in [(1, "Hi"), (3, "!"), (2, " there"), (4, "")]:
        handlers.on_output(hid, out(job, seq, chunk, is_final=seq == 4))

    assert handlers.on_status(hid, status(job, "succeeded")) is True

    job.refresh_from_db()
    assert (job.prompt_tokens, job.completion_tokens) == (None, 3)
    assert lifecycle.usage_of(job)["total_tokens"] == 3
    done = job_events(job.pk)[-1]
    assert done["type"] == "done"
    assert done["usage"] == {"prompt_tokens": None, "completion_tokens": 3, "total_tokens": 3}


def test_chunks_stuck_behind_a_lost_one_are_kept_when_the_job_succeeds(job, host):
    hid = str(host.pk)
    handlers.on_output(hid, out(job, 1, "a"))
    handlers.on_output(hid, out(job, 3, "c"))
    handlers.on_status(hid, status(job, "succeeded"))
    job.refresh_from_db()
    assert job.output == "ac"
    assert [e["seq"] for e in job_events(job.pk) if e["type"] == "token"] == [1, 3]


def test_a_final_state_never_changes(job, host):
    hid = str(host.pk)
    handlers.on_status(hid, status(job, "succeeded"))
    assert handlers.on_status(hid, status(job, "failed", error="late")) is False
    assert handlers.on_status(hid, status(job, "cancelled")) is False
    handlers.on_output(hid, out(job, 1, "late"))
    job.refresh_from_db()
    assert (job.status, job.error, job.output) == ("completed", "", "")
    host.refresh_from_db()
    assert (host.jobs_completed, host.jobs_failed) == (1, 0)


def test_the_same_succeeded_twice_counts_once(job, host):
    hid = str(host.pk)
    assert handlers.on_status(hid, status(job, "succeeded")) is True
    assert handlers.on_status(hid, status(job, "succeeded")) is False
    host.refresh_from_db()
    assert host.jobs_completed == 1
    assert [e["type"] for e in job_events(job.pk)].count("done") == 1


def test_a_failure_fails_the_job_and_counts_against_the_island(job, host):
    handlers.on_status(str(host.pk), status(job, "failed", error="CUDA out of memory"))
    job.refresh_from_db()
    assert (job.status, job.error) == ("failed", "CUDA out of memory")
    host.refresh_from_db()
    assert host.jobs_failed == 1
    assert job_events(job.pk)[-1] == {
        "type": "error",
        "job_id": str(job.pk),
        "error": "CUDA out of memory",
    }


def test_an_islands_own_timeout_becomes_the_timeout_status(job, host):
    handlers.on_status(
        str(host.pk), status(job, "failed", error="Timeout: job exceeded 300s limit")
    )
    job.refresh_from_db()
    assert job.status == "timeout"


def test_cancelled_on_the_island_cancels_the_job(job, host):
    handlers.on_status(str(host.pk), status(job, "cancelled"))
    job.refresh_from_db()
    assert job.status == "cancelled"


def test_messages_from_an_island_that_does_not_run_the_job_are_ignored(job, host):
    stranger = str(island().pk)
    assert handlers.on_status(stranger, status(job, "succeeded")) is False
    assert handlers.on_output(stranger, out(job, 1, "spoofed")) == 0
    assert handlers.on_lease(stranger, {"job_id": str(job.pk), "extend_seconds": 600}) is False
    assert handlers.on_progress(stranger, {"job_id": str(job.pk), "step": 1, "total": 2}) is False
    job.refresh_from_db()
    assert (job.status, job.output) == ("running", "")


def test_a_lease_message_extends_the_lease_but_never_shortens_it(job, host):
    handlers.on_lease(str(host.pk), {"job_id": str(job.pk), "extend_seconds": 120})
    job.refresh_from_db()
    extended = job.lease_expires_at
    assert extended > timezone.now() + timedelta(seconds=110)
    handlers.on_lease(str(host.pk), {"job_id": str(job.pk), "extend_seconds": 5})
    job.refresh_from_db()
    assert job.lease_expires_at == extended


def test_a_lease_is_capped(job, host):
    handlers.on_lease(str(host.pk), {"job_id": str(job.pk), "extend_seconds": 10**9})
    job.refresh_from_db()
    cap = timezone.now() + timedelta(seconds=settings.JOB_MAX_LEASE_EXTENSION_SECONDS + 1)
    assert job.lease_expires_at < cap


def test_progress_and_images_reach_the_clients_and_images_are_kept(job, host):
    hid = str(host.pk)
    handlers.on_progress(hid, {"job_id": str(job.pk), "step": 10, "total": 30})
    image = {"job_id": str(job.pk), "image_data": "aGk=", "format": "png", "width": 8, "height": 8}
    assert handlers.on_image(hid, image) is True
    job.refresh_from_db()
    assert job.images == [{"data": "aGk=", "format": "png", "width": 8, "height": 8}]
    events = job_events(job.pk)
    assert {"type": "progress", "job_id": str(job.pk), "step": 10, "total": 30} in events
    assert {
        "type": "image",
        "job_id": str(job.pk),
        "data": "aGk=",
        "format": "png",
        "width": 8,
        "height": 8,
    } in events


@pytest.mark.parametrize(("kind", "payload"), [
    ("status", {"job_id": "not-a-uuid", "state": "started"}),
    ("status", {"job_id": "6f1c1d64-6f4e-4a8f-9f51-0d1b1f0e7c11", "state": "exploded"}),
    ("output", {"job_id": "6f1c1d64-6f4e-4a8f-9f51-0d1b1f0e7c11", "seq": 0, "chunk": "x"}),
    ("output", {"job_id": "6f1c1d64-6f4e-4a8f-9f51-0d1b1f0e7c11", "seq": "1", "chunk": "x"}),
    ("lease", {"job_id": "6f1c1d64-6f4e-4a8f-9f51-0d1b1f0e7c11", "extend_seconds": -5}),
])  # fmt: skip
def test_malformed_messages_are_refused_by_the_parsers(kind, payload, host):
    parse = getattr(handlers, f"parse_{kind}")
    msg = Incoming(
        f"host.{host.pk}.{kind}", str(host.pk), kind, orjson.dumps(payload), timezone.now()
    )
    with pytest.raises(Invalid):
        parse(msg)


def test_the_ingest_tasks_apply_a_batch_of_records(job, host):
    from compute.tasks import ingest_job_output, ingest_job_status

    hid = str(host.pk)
    records = [handlers.parse_output(Incoming(f"host.{hid}.output", hid, "output",
               orjson.dumps(out(job, s, c)), timezone.now())) for s, c in [(2, "y"), (1, "x")]]  # fmt: skip
    assert ingest_job_output(records, []) == 2
    ingest_job_status(
        [{"host_id": hid, "job_id": str(job.pk), "state": "succeeded", "error": ""}], []
    )
    job.refresh_from_db()
    assert (job.status, job.output) == ("completed", "xy")


def test_a_batch_of_several_kinds_goes_to_one_task_output_before_status(job, host):
    """GIVEN one batch from the Island: ``started``, two chunks, the final chunk and
    ``succeeded`` (and a heartbeat of another stream) WHEN the bridge plans its tasks THEN
    the job events travel in one task, output first; applied, the job ends at once with
    all its output (no waiting for another task), and every message is acked."""
    from nats.aio.msg import Msg

    from compute.tasks import ingest_job_events
    from sail.bridge import plan, sort_batch
    from sail.registry import KINDS

    hid = str(host.pk)
    sent = [
        ("status", status(job, "started")),
        ("output", out(job, 1, "x")),
        ("heartbeat", {"host_id": hid, "status": "online", "active_jobs": 1}),
        ("output", out(job, 2, "y")),
        ("status", status(job, "succeeded")),
        ("output", out(job, 3, "", is_final=True)),
    ]
    msgs = [Msg(None, subject=f"host.{hid}.{kind}", reply=f"ack.{i}", data=orjson.dumps(body))
            for i, (kind, body) in enumerate(sent)]  # fmt: skip
    sends = plan(sort_batch(msgs, KINDS))
    assert [send.task for send in sends] == [
        "compute.job_tasks.ingest_job_events", "sail.tasks.ingest_heartbeats"
    ]  # fmt: skip
    [parts] = sends[0].args
    assert [(kind, acks) for kind, _, acks in parts] == [
        ("output", ["ack.1", "ack.3", "ack.5"]), ("status", ["ack.0", "ack.4"])
    ]  # fmt: skip
    ingest_job_events.apply(args=(parts,)).get()
    job.refresh_from_db()
    assert (job.status, job.output) == ("completed", "xy")


def test_a_batch_of_one_kind_goes_to_that_kind_s_task(job, host):
    from nats.aio.msg import Msg

    from sail.bridge import plan, sort_batch
    from sail.registry import KINDS

    msgs = [Msg(None, subject=f"host.{host.pk}.status", reply="ack.0",
                data=orjson.dumps(status(job, "started")))]  # fmt: skip
    [send] = plan(sort_batch(msgs, KINDS))
    assert (send.task, send.args[1]) == ("compute.job_tasks.ingest_job_status", ["ack.0"])


def test_a_succeeded_whose_output_never_comes_is_applied_after_the_wait(job, host):
    """GIVEN an Island that sent ``succeeded`` but whose final output chunk never arrives
    WHEN the status task has waited all its tries THEN the job still ends, completed."""
    from compute.tasks import OUTPUT_WAIT_TRIES, ingest_job_status
    from core.retry import RETRY

    assert RETRY["max_retries"] < OUTPUT_WAIT_TRIES  # the case this guards
    record = {"host_id": str(host.pk), "job_id": str(job.pk), "state": "succeeded", "error": ""}
    ingest_job_status.apply(args=([record], [])).get()
    job.refresh_from_db()
    assert job.status == "completed"


def test_the_token_relay_publishes_at_once_in_order_and_drops_strangers(
    job, host, transactional_db
):
    """GIVEN a relay on its own connection WHEN chunks arrive 2, 1, 3 (and one from a
    stranger) THEN token events 1, 2, 3 are on the job's subject before any database write."""
    hid, stranger_id = str(host.pk), str(island().pk)

    async def scenario():
        nc = await nats.connect(settings.NATS_URL, **credentials())
        relay = handlers.TokenRelay(nc)
        sent = [await relay.relay({"host_id": hid, "job_id": str(job.pk), "seq": s, "chunk": c},
                                  f"host.{hid}")
                for s, c in [(2, "b"), (1, "a"), (3, "c")]]  # fmt: skip
        stranger = await relay.relay(
            {"host_id": stranger_id, "job_id": str(job.pk), "seq": 4, "chunk": "!"},
            f"host.{stranger_id}",
        )
        # The shared field user may never speak for an Island with a key of its own.
        impostor = await relay.relay(
            {"host_id": hid, "job_id": str(job.pk), "seq": 4, "chunk": "!"}, f"field.host.{hid}"
        )
        await nc.flush()
        await nc.close()
        return sent, stranger + impostor

    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(r=asyncio.run(scenario())))
    thread.start()
    thread.join(10)
    sent, stranger = result["r"]
    assert (sent, stranger) == ([0, 2, 1], 0)
    job.refresh_from_db()
    assert job.output == ""
    tokens = [(e["seq"], e["content"]) for e in job_events(job.pk) if e["type"] == "token"]
    assert tokens == [(1, "a"), (2, "b"), (3, "c")]
    # The durable path publishes the same tokens later: JetStream drops the copies.
    for seq, chunk in [(1, "a"), (2, "b"), (3, "c")]:
        handlers.on_output(hid, out(job, seq, chunk))
    assert len([e for e in job_events(job.pk) if e["type"] == "token"]) == 3


def test_the_token_relay_learns_the_island_from_the_assignment_and_forgets_it_on_cancel(
    transactional_db,
):
    """GIVEN a relay listening on NATS WHEN an assignment of a job the database does not
    hold goes out THEN the relay takes that Island's chunks for it (no database answer
    needed); after the job's cancel it keeps nothing of the job and relays no more."""
    import uuid

    job_id, host_id = str(uuid.uuid4()), str(uuid.uuid4())

    async def scenario():
        nc = await nats.connect(settings.NATS_URL, **credentials())
        relay = handlers.TokenRelay(nc)
        subs = await relay.subscribe()
        await nc.flush()
        headers = {"Nats-Msg-Id": f"{job_id}:2"}
        await nc.publish(f"host.{host_id}.jobs", b"{}", headers=headers)
        await nc.flush()
        await asyncio.sleep(0.2)
        record = {"host_id": host_id, "job_id": job_id, "seq": 1, "chunk": "a"}
        sent = await relay.relay(record, f"host.{host_id}")
        await nc.publish(f"host.{host_id}.cancel", orjson.dumps({"job_id": job_id}))
        await nc.flush()
        await asyncio.sleep(0.2)
        kept = (job_id in relay.owners, dict(relay.next_seq))
        record = {"host_id": host_id, "job_id": job_id, "seq": 2, "chunk": "b"}
        after = await relay.relay(record, f"host.{host_id}")
        for sub in subs:
            await sub.unsubscribe()
        await nc.close()
        return sent, kept, after

    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(r=asyncio.run(scenario())))
    thread.start()
    thread.join(10)
    sent, kept, after = result["r"]
    assert sent == 1
    assert kept == (False, {})
    assert after == 0  # the database knows no such running job: nobody's chunk
