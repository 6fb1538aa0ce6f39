"""Jobs end to end: submitted over the API of the live server, placed and dispatched on
JetStream by the coordinator, run by the real agent with its mock runtime, streamed back
over SSE; cancel, an Island killed mid-job, time limits, a job waiting for an Island, and
the demo flow of the run command (`island chat` against the live server)."""

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import orjson
from island_cli.agent.runtimes import prompt_text
from island_cli.agent.runtimes.mock import reply_tokens

from compute.models import Cargo, Job
from compute.services import sweep
from sail.client import sail
from tests.conftest import BASE_DIR
from tests.e2e.conftest import eventually, online, pair

LONG = " ".join(f"word{i}" for i in range(60))


def chat_input(text: str, max_tokens: int = 128) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}


def expected_output(job_input: dict[str, Any]) -> str:
    return "".join(reply_tokens(job_input)[: job_input["max_tokens"]])


def submit(e2e, key: str, job_input: dict[str, Any], workload: str = "llm-chat") -> str:
    with e2e.client(key) as client:
        response = client.post("/jobs", json={"workload": workload, "input": job_input})
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"]


def get_job(e2e, key: str, job_id: str) -> dict[str, Any]:
    with e2e.client(key) as client:
        response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def status_of(e2e, key: str, job_id: str) -> str:
    return get_job(e2e, key, job_id)["status"]


def sse(e2e, key: str, job_id: str, timeout: float = 30) -> list[dict[str, Any]]:
    """Every event of ``GET /jobs/:id/stream`` until the server ends the stream; each
    event's ``event:`` name must equal its ``type``."""
    events: list[dict[str, Any]] = []
    name = None
    with e2e.client(key) as client:
        url = f"/jobs/{job_id}/stream"
        with client.stream("GET", url, timeout=timeout) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    event = json.loads(line.removeprefix("data: "))
                    assert event["type"] == name
                    events.append(event)
    return events


def tokens_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["content"] for e in events if e["type"] == "token")


class Inbox:
    """What the Island publishes on ``subject`` (core NATS), as the test's own reader."""

    def __init__(self, subject: str):
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()

        async def on_msg(msg: Any) -> None:
            with self._lock:
                self.messages.append(orjson.loads(msg.data))

        async def subscribe(nc: Any) -> Any:
            sub = await nc.subscribe(subject, cb=on_msg)
            await nc.flush()
            return sub

        self.sub = sail.call(subscribe)

    def of(self, job_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if m.get("job_id") == job_id]

    def close(self) -> None:
        sail.call(lambda nc: self.sub.unsubscribe())


def test_a_chat_job_streams_running_then_tokens_in_order_then_done(e2e, account, agent):
    user, key = account
    island_agent = agent("chatty", mock_tokens_per_second=40)
    pair(island_agent, user)
    online(island_agent)
    job_input = chat_input("hello from the end to end test")

    job_id = submit(e2e, key, job_input)
    events = sse(e2e, key, job_id)

    assert events[0]["type"] == "status"
    assert events[0]["state"] == "running"
    tokens = [e for e in events if e["type"] == "token"]
    assert [t["seq"] for t in tokens] == list(range(1, len(tokens) + 1))
    assert [e["type"] for e in events[-2:]] == ["status", "done"]
    assert events[-2]["state"] == "completed"
    job = get_job(e2e, key, job_id)
    assert tokens_of(events) == job["output"] == expected_output(job_input)
    usage = events[-1]["usage"]
    assert usage["prompt_tokens"] == len(prompt_text(job_input).split())
    assert usage["completion_tokens"] == len(tokens)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert job["status"] == "completed"
    assert job["island_id"] == island_agent.host_id
    assert {k: job["usage"][k] for k in usage} == usage
    assert job["started_at"]
    assert job["completed_at"]

    # A client attaching after the end gets the whole job again, and the stream ends.
    late = sse(e2e, key, job_id, timeout=15)
    assert tokens_of(late) == job["output"]
    assert late[-1]["type"] == "done"
    assert late[-1]["usage"] == usage


def test_jobs_run_as_fast_as_the_agent_can_keep_their_whole_output(e2e, account, agent):
    """Output chunks and the ``succeeded`` that follows them reach the database through
    different tasks; the job must not end before its last chunk is stored."""
    user, key = account
    island_agent = agent("sprinter", mock_tokens_per_second=0)
    pair(island_agent, user)
    online(island_agent)
    inputs = [chat_input(f"sprint number {n} " + LONG) for n in range(5)]

    job_ids = [submit(e2e, key, job_input) for job_input in inputs]

    for job_id, job_input in zip(job_ids, inputs, strict=True):
        eventually(lambda job_id=job_id: status_of(e2e, key, job_id) == "completed", timeout=15)
        job = get_job(e2e, key, job_id)
        assert job["output"] == expected_output(job_input)
        assert job["usage"]["completion_tokens"] == len(reply_tokens(job_input))


def test_cancelling_a_running_job_stops_the_agent(e2e, account, agent):
    user, key = account
    island_agent = agent("slowpoke", mock_tokens_per_second=4)
    pair(island_agent, user)
    online(island_agent)
    statuses = Inbox(f"host.{island_agent.host_id}.status")
    outputs = Inbox(f"host.{island_agent.host_id}.output")
    try:
        job_id = submit(e2e, key, chat_input(LONG))
        eventually(lambda: outputs.of(job_id))  # it is producing tokens

        with e2e.client(key) as client:
            cancelled = client.delete(f"/jobs/{job_id}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["data"]["status"] == "cancelled"

        # The agent got host.{id}.cancel, stopped the job and said so.
        eventually(lambda: {"cancelled"} & {m["state"] for m in statuses.of(job_id)}, timeout=5)
        produced = len(outputs.of(job_id))
        time.sleep(0.6)
        assert len(outputs.of(job_id)) == produced  # no token after the stop
        assert not any(m.get("is_final") for m in outputs.of(job_id))
        assert "succeeded" not in {m["state"] for m in statuses.of(job_id)}
    finally:
        statuses.close()
        outputs.close()
    eventually(lambda: island_agent.island().active_jobs == 0, timeout=5)
    job = Job.objects.get(pk=job_id)
    assert job.status == "cancelled"
    assert len(job.output) < len(expected_output(chat_input(LONG)))
    events = sse(e2e, key, job_id, timeout=15)
    assert events[-1]["type"] == "error"


def test_a_job_of_a_killed_agent_is_requeued_to_another_and_completed(e2e, account, agent):
    user, key = account
    first = agent("doomed", mock_tokens_per_second=5)
    pair(first, user)
    online(first)
    job_input = chat_input(LONG)
    job_id = submit(e2e, key, job_input)
    eventually(lambda: Job.objects.filter(pk=job_id, island_id=first.host_id).exclude(output=""))
    second = agent("survivor", mock_tokens_per_second=0)
    pair(second, user)
    online(second)

    first.kill()

    # Beat would run the sweep every few seconds; here the test runs it until the lease
    # (renewed by 2 s at a time) or the silence (2 s) gives the job back.
    def requeued() -> bool:
        sweep.sweep_jobs()
        return Job.objects.filter(pk=job_id).exclude(island_id=first.host_id).exists()

    eventually(requeued, timeout=10, interval=0.2)
    eventually(lambda: status_of(e2e, key, job_id) == "completed", timeout=15)
    job = Job.objects.get(pk=job_id)
    assert str(job.island_id) == second.host_id
    assert job.attempts == 2
    assert first.host_id in [str(i) for i in job.excluded_islands]
    assert job.output == expected_output(job_input)  # the second attempt, not both
    events = sse(e2e, key, job_id, timeout=15)
    assert {"state": "queued"}.items() <= next(
        e for e in events if e["type"] == "status" and e["state"] == "queued"
    ).items()
    assert tokens_of(events) == job.output
    assert events[-1]["type"] == "done"


def test_a_job_over_its_cargos_time_limit_times_out(e2e, account, agent):
    user, key = account
    Cargo.objects.filter(slug="llm-chat").update(time_limit_seconds=1)
    island_agent = agent("dawdler", mock_tokens_per_second=3)
    pair(island_agent, user)
    online(island_agent)

    job_id = submit(e2e, key, chat_input(LONG))

    # The agent enforces the limit the assignment carries; no sweep is run here.
    eventually(lambda: status_of(e2e, key, job_id) == "timeout", timeout=10)
    job = get_job(e2e, key, job_id)
    assert "Timeout" in job["error"]
    assert 0 < len(job["output"]) < len(expected_output(chat_input(LONG)))
    events = sse(e2e, key, job_id, timeout=15)
    assert events[-1]["type"] == "error"
    assert "Timeout" in events[-1]["error"]


def test_a_job_without_an_island_waits_queued_until_one_comes_online_and_pairs(e2e, account, agent):
    user, key = account
    job_input = chat_input("is anyone out there")
    job_id = submit(e2e, key, job_input)
    eventually(lambda: status_of(e2e, key, job_id) == "queued", timeout=5)
    time.sleep(0.5)
    assert status_of(e2e, key, job_id) == "queued"

    island_agent = agent("newcomer")
    pair(island_agent, user)

    eventually(lambda: status_of(e2e, key, job_id) == "completed", timeout=10)
    job = get_job(e2e, key, job_id)
    assert job["island_id"] == island_agent.host_id
    assert job["output"] == expected_output(job_input)


def test_the_demo_flow_pairs_an_island_and_island_chat_prints_streamed_tokens(
    e2e, account, agent, tmp_path
):
    """As after `make run`: one agent, paired by its owner, then `island chat "hi"`."""
    user, key = account
    island_agent = agent("demo-island", mock_tokens_per_second=10)
    pair(island_agent, user)
    online(island_agent)

    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "ARCHIPELAG_API_URL": e2e.url,
        "ARCHIPELAG_API_KEY": key,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(BASE_DIR / "cli"),
    }
    env.pop("ISLAND_CONFIG", None)
    cmd = [sys.executable, "-m", "island_cli", "chat", "hi"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    arrivals: list[tuple[float, bytes]] = []
    while chunk := os.read(proc.stdout.fileno(), 4096):
        arrivals.append((time.monotonic(), chunk))
    assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""

    printed = b"".join(chunk for _, chunk in arrivals).decode()
    expected = expected_output(chat_input("hi"))
    assert printed == expected + "\n"
    # Streamed: the words came over about a second (10 tokens/s), not in one piece.
    assert len(arrivals) > 3
    assert arrivals[-1][0] - arrivals[0][0] > 0.4
    job = Job.objects.get(user=user)
    assert job.status == "completed"
    assert job.output == expected
