import time, httpx
import pytest
from compute.models import Job, Island
from sail.client import sail
from portal.api.throttling import redis_client
from tests.compute.test_openai import MESSAGES, key, fake  # noqa

def test_debug(stack, key, fake):
    c = httpx.Client(base_url=f"{stack.url}/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=5)
    try:
        r = c.post("/chat/completions", json={"model": "llm-chat", "messages": MESSAGES})
        print("RESP", r.status_code, r.text[:100])
    except Exception as e:
        print("EXC", e)
    for j in Job.objects.all():
        print("JOB", j.status, j.island_id, j.attempts, j.output, j.error, j.started_at)
    print("ISL", list(Island.objects.values("id", "status", "last_heartbeat_at")))
    async def info(nc):
        js = nc.jetstream()
        out = []
        for s in ("JOB_EVENTS", "ISLANDS"):
            i = await js.stream_info(s); out.append((s, i.state.messages, i.state.first_seq, i.state.last_seq))
        for s, cn in (("JOB_EVENTS", "coordinator-job-events"), ("ISLANDS", "coordinator-islands")):
            ci = await js.consumer_info(s, cn); out.append((cn, ci.num_pending, ci.num_ack_pending, ci.delivered.stream_seq, ci.ack_floor.stream_seq, ci.num_redelivered))
        return out
    print("NATS", sail.call(info))
    r = redis_client()
    print("REDIS", {k: r.type(k) for k in r.keys("*")}, r.llen("celery"))
    print("PROCS", stack.worker.poll(), stack.bridge.poll())
