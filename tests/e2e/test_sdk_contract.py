"""The upstream Python SDK (archipelag-io/archipelag-python, package ``archipelag``)
against the live coordinator and a real Island: each call below sends exactly the
requests the SDK sends and validates the answers as its pydantic models do (lax mode,
the same field types, required fields, defaults and enums). The SDK is not on the
package registries, so this is written from reading it, not a copy of it.

What the SDK does, call by call (``Client``; every request carries ``Authorization:
Bearer <key>``, ``Content-Type: application/json`` and ``User-Agent:
archipelag-python/0.1.0``; only 200 and 201 are successes, their body read as JSON):

- ``create_job(workload, input)``: ``POST /api/v1/jobs`` ``{workload, input}`` → ``Job``
  of ``body["data"]``; ``get_job(id)``: ``GET /api/v1/jobs/{id}`` → the same;
  ``list_jobs(limit=20, offset=0)``: ``GET /api/v1/jobs?limit=20&offset=0`` → a ``Job``
  of each of ``body["data"]``; ``cancel_job(id)``: ``DELETE /api/v1/jobs/{id}`` → ``Job``.
- ``wait_for_job(id)``: ``get_job`` until the status is completed, failed, cancelled or
  timeout (failed raises ``JobFailedError``).
- ``stream_job(id)``: ``GET /api/v1/jobs/{id}/stream`` with httpx-sse (``Accept:
  text/event-stream``, ``Cache-Control: no-store``; another content type raises), each
  event's ``data`` JSON read as a ``StreamEvent``: ``type`` (default ``token``) must be
  a ``StreamEventType``, ``usage`` (when present) a ``Usage``; read until the server
  closes the stream.
- ``chat(prompt)``: ``create_job("llm-chat", {"prompt": prompt})``, ``wait_for_job``, then
  ``ChatResult(content=output or "", usage=job.usage or Usage())``; ``chat_stream``:
  ``create_job`` then ``stream_job``.
- ``get_workload(slug)``: ``GET /api/v1/workloads/{slug}`` → ``Workload`` of ``data``.
- ``submit_batch(workload, inputs, merge_strategy="concat", fail_mode="best_effort",
  max_parallelism=None, region=None, bid_price=None)``: ``POST /api/v1/jobs/batch``
  ``{workload, inputs, merge_strategy, fail_mode}`` plus the optional ones given
  (``bid_price`` as ``str(float)``) → ``BatchJob`` of the whole body (no ``data``);
  ``get_batch_status(id)``: ``GET /api/v1/jobs/{id}/batch-status`` → ``BatchProgress``
  of the whole body; ``wait_for_batch(id)``: ``get_batch_status`` until
  ``parent_state`` is succeeded, failed or cancelled (progress from
  ``child_states["succeeded"]`` and ``["failed"]``), then ``get_job(id)`` of the parent
  (failed raises).
- ``get_account()``: ``GET /api/v1/account`` → ``Account`` of ``data``; ``list_api_keys()``:
  ``GET /api/v1/api-keys`` → an ``ApiKey`` of each of ``data``; ``create_api_key(name)``:
  ``POST /api/v1/api-keys`` ``{name}`` → ``(ApiKey of data, body["key"])``;
  ``delete_api_key(id)``: ``DELETE /api/v1/api-keys/{id}``, the answer read like any other
  (so a 204 without a body raises).
"""

import json
import time
from datetime import datetime
from enum import StrEnum
from typing import Any

import httpx
import pytest
from island_cli.agent.runtimes.mock import reply_tokens
from pydantic import BaseModel

from portal import services
from tests.e2e.conftest import PASSWORD, online, pair
from tests.e2e.test_jobs import LONG

SDK_HEADERS = {"Content-Type": "application/json", "User-Agent": "archipelag-python/0.1.0"}


# --- the SDK's models, as it declares them -----------------------------------------------
class JobStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


FINAL = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMEOUT}


class RuntimeType(StrEnum):
    CONTAINER = "container"
    WASM = "wasm"


class StreamEventType(StrEnum):
    TOKEN = "token"
    STATUS = "status"
    PROGRESS = "progress"
    IMAGE = "image"
    ERROR = "error"
    DONE = "done"


class Usage(BaseModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    credits_used: float = 0.0


class Job(BaseModel):
    id: str
    workload_id: int
    workload_slug: str | None = None
    status: JobStatus
    input: dict[str, Any]
    output: str | None = None
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    usage: Usage | None = None


class StreamEvent(BaseModel):
    type: StreamEventType
    content: str | None = None
    step: int | None = None
    total: int | None = None
    image_data: str | None = None
    image_format: str | None = None
    error: str | None = None
    usage: Usage | None = None


class Workload(BaseModel):
    id: int
    name: str
    slug: str
    description: str | None = None
    runtime_type: RuntimeType
    required_vram_mb: int | None = None
    required_ram_mb: int | None = None
    price_per_job: float
    is_enabled: bool = True


class BatchChild(BaseModel):
    id: str
    batch_index: int
    state: str
    error: str | None = None
    host_id: str | None = None


class BatchConfig(BaseModel):
    chunk_count: int
    merge_strategy: str = "concat"
    fail_mode: str = "best_effort"
    completed: int = 0
    failed: int = 0


class BatchJob(BaseModel):
    id: str
    state: str
    workload: str
    batch: BatchConfig
    children: list[BatchChild] = []
    created_at: datetime


class BatchProgress(BaseModel):
    parent_id: str
    parent_state: str
    chunk_count: int
    merge_strategy: str
    fail_mode: str
    child_states: dict[str, int] = {}
    children: list[BatchChild] = []


class ApiKey(BaseModel):
    id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = None
    expires_at: datetime | None = None


class Account(BaseModel):
    id: str
    email: str
    credits: float
    created_at: datetime


class JobFailed(Exception):
    pass


# --- the SDK's requests --------------------------------------------------------------------
class Sdk:
    """The SDK's calls, request for request (polling faster than its 1 s and 2 s)."""

    def __init__(self, url: str, key: str):
        headers = {"Authorization": f"Bearer {key}", **SDK_HEADERS}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=60)

    def _body(self, response: httpx.Response) -> Any:
        assert response.status_code in (200, 201), (response.status_code, response.text)
        return response.json()

    def get_account(self) -> Account:
        return Account(**self._body(self.http.get("/api/v1/account"))["data"])

    def list_api_keys(self) -> list[ApiKey]:
        return [ApiKey(**k) for k in self._body(self.http.get("/api/v1/api-keys"))["data"]]

    def create_api_key(self, name: str) -> tuple[ApiKey, str]:
        body = self._body(self.http.post("/api/v1/api-keys", json={"name": name}))
        return ApiKey(**body["data"]), body["key"]

    def delete_api_key(self, key_id: str) -> None:
        self._body(self.http.delete(f"/api/v1/api-keys/{key_id}"))

    def create_job(self, workload: str, job_input: dict) -> Job:
        body = {"workload": workload, "input": job_input}
        return Job(**self._body(self.http.post("/api/v1/jobs", json=body))["data"])

    def get_job(self, job_id: str) -> Job:
        return Job(**self._body(self.http.get(f"/api/v1/jobs/{job_id}"))["data"])

    def list_jobs(self, limit: int = 20, offset: int = 0) -> list[Job]:
        params = {"limit": limit, "offset": offset}
        return [Job(**j) for j in self._body(self.http.get("/api/v1/jobs", params=params))["data"]]

    def cancel_job(self, job_id: str) -> Job:
        return Job(**self._body(self.http.delete(f"/api/v1/jobs/{job_id}"))["data"])

    def wait_for_job(self, job_id: str, timeout: float = 30) -> Job:
        deadline = time.monotonic() + timeout
        while (job := self.get_job(job_id)).status not in FINAL:
            assert time.monotonic() < deadline, f"job {job_id} did not end"
            time.sleep(0.2)
        if job.status == JobStatus.FAILED:
            raise JobFailed(job.error)
        return job

    def stream_job(self, job_id: str) -> list[StreamEvent]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        events = []
        with self.http.stream("GET", f"/api/v1/jobs/{job_id}/stream", headers=headers) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].partition(";")[0] == "text/event-stream"
            data: list[str] = []
            for line in r.iter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                elif not line and data:
                    events.append(self._event(json.loads("\n".join(data))))
                    data = []
        return events

    @staticmethod
    def _event(parsed: dict) -> StreamEvent:
        return StreamEvent(
            type=StreamEventType(parsed.get("type", "token")),
            content=parsed.get("content") or parsed.get("chunk"),
            step=parsed.get("step"),
            total=parsed.get("total"),
            image_data=parsed.get("image_data"),
            image_format=parsed.get("format"),
            error=parsed.get("error"),
            usage=Usage(**parsed["usage"]) if "usage" in parsed else None,
        )

    def chat(self, prompt: str) -> tuple[str, Usage]:
        job = self.wait_for_job(self.create_job("llm-chat", {"prompt": prompt}).id)
        return job.output or "", job.usage or Usage()

    def chat_stream(self, prompt: str) -> list[StreamEvent]:
        return self.stream_job(self.create_job("llm-chat", {"prompt": prompt}).id)

    def get_workload(self, slug: str) -> Workload:
        return Workload(**self._body(self.http.get(f"/api/v1/workloads/{slug}"))["data"])

    def submit_batch(self, workload: str, inputs: list[dict], **options: Any) -> BatchJob:
        body: dict[str, Any] = {"workload": workload, "inputs": inputs,
                                "merge_strategy": options.get("merge_strategy", "concat"),
                                "fail_mode": options.get("fail_mode", "best_effort")}  # fmt: skip
        for name in ("max_parallelism", "region"):
            if options.get(name) is not None:
                body[name] = options[name]
        if options.get("bid_price") is not None:
            body["bid_price"] = str(options["bid_price"])
        return BatchJob(**self._body(self.http.post("/api/v1/jobs/batch", json=body)))

    def get_batch_status(self, batch_id: str) -> BatchProgress:
        url = f"/api/v1/jobs/{batch_id}/batch-status"
        return BatchProgress(**self._body(self.http.get(url)))

    def wait_for_batch(self, batch_id: str, timeout: float = 30) -> tuple[BatchProgress, Job]:
        deadline, seen = time.monotonic() + timeout, []
        while True:
            progress = self.get_batch_status(batch_id)
            seen.append(
                (progress.child_states.get("succeeded", 0), progress.child_states.get("failed", 0))
            )
            if progress.parent_state in ("succeeded", "failed", "cancelled"):
                job = self.get_job(batch_id)
                if job.status == JobStatus.FAILED:
                    raise JobFailed(job.error)
                return progress, job
            assert time.monotonic() < deadline, f"batch {batch_id} did not end"
            time.sleep(0.2)


# --- the contract ------------------------------------------------------------------------
@pytest.fixture
def sdk(e2e, account, agent) -> Sdk:
    """The SDK's client of a new account, with one paired Island online."""
    user, key = account
    island_agent = agent("sdk-island", mock_tokens_per_second=40)
    pair(island_agent, user)
    online(island_agent)
    return Sdk(e2e.url, key)


def words(prompt: str) -> str:
    return "".join(reply_tokens({"prompt": prompt}))


def test_create_get_list_and_wait_for_job(sdk):
    created = sdk.create_job("llm-chat", {"prompt": "contract one"})
    listed = sdk.list_jobs()  # while it is unfinished
    done = sdk.wait_for_job(created.id)

    assert created.status not in FINAL
    assert created.usage == Usage(credits_used=0.0)
    assert [job.id for job in listed] == [created.id]
    assert done.status == JobStatus.COMPLETED
    assert done.output == words("contract one")
    assert done.usage is not None
    assert done.usage.completion_tokens == len(reply_tokens({"prompt": "contract one"}))
    assert done.usage.total_tokens == done.usage.completion_tokens + 2
    assert done.usage.credits_used > 0
    assert sdk.get_job(created.id) == done


def test_stream_job_and_chat_stream_end_with_done_and_its_usage(sdk):
    events = sdk.chat_stream("contract stream")
    job_id = sdk.list_jobs(limit=1)[0].id
    again = sdk.stream_job(job_id)

    for stream in (events, again):
        assert "".join(e.content or "" for e in stream if e.type == StreamEventType.TOKEN) == (
            words("contract stream")
        )
        assert stream[-1].type == StreamEventType.DONE
        assert stream[-1].usage is not None
        assert stream[-1].usage.completion_tokens == len(
            reply_tokens({"prompt": "contract stream"})
        )


def test_chat_answers_with_its_usage(sdk):
    content, usage = sdk.chat("contract chat")

    assert content == words("contract chat")
    assert usage.total_tokens == usage.completion_tokens + 2
    assert usage.credits_used > 0


def test_cancel_job_answers_the_cancelled_job(sdk):
    job = sdk.create_job("llm-chat", {"prompt": LONG})

    cancelled = sdk.cancel_job(job.id)

    assert cancelled.status == JobStatus.CANCELLED
    assert cancelled.usage == Usage(credits_used=0.0)
    with pytest.raises(AssertionError, match="409"):
        sdk.cancel_job(job.id)


def test_get_workload(sdk):
    workload = sdk.get_workload("llm-chat")

    assert (workload.slug, workload.runtime_type) == ("llm-chat", RuntimeType.CONTAINER)
    assert workload.price_per_job > 0


def test_submit_batch_get_its_status_and_wait_for_it(sdk):
    prompts = ["batch one", "batch two", "batch three"]

    batch = sdk.submit_batch("llm-chat", [{"prompt": p} for p in prompts], bid_price=0.05,
                             max_parallelism=2)  # fmt: skip
    status = sdk.get_batch_status(batch.id)
    progress, parent = sdk.wait_for_batch(batch.id)

    assert batch.batch.chunk_count == 3
    assert [c.batch_index for c in batch.children] == [0, 1, 2]
    assert status.parent_id == batch.id
    assert progress.parent_state == "succeeded"
    assert progress.child_states == {"succeeded": 3}
    assert all(c.host_id for c in progress.children)
    assert parent.status == JobStatus.COMPLETED
    assert parent.output == "".join(words(p) for p in prompts)


def test_wait_for_batch_raises_when_the_batch_failed(sdk):
    batch = sdk.submit_batch("llm-chat", [{"prompt": LONG}], fail_mode="fail_fast")
    sdk.cancel_job(batch.children[0].id)

    with pytest.raises(JobFailed, match="did not complete"):
        sdk.wait_for_batch(batch.id)


def test_account_and_api_keys(e2e):
    user = services.sign_up(email="keys@example.com", password=PASSWORD)
    sdk = Sdk(
        e2e.url,
        services.create_api_key(user=user, name="mine", scopes=["read", "write", "keys"])[1],
    )

    account = sdk.get_account()
    made, full_key = sdk.create_api_key("from the sdk")
    listed = sdk.list_api_keys()
    sdk.delete_api_key(made.id)

    assert (account.id, account.email) == (str(user.pk), "keys@example.com")
    assert account.credits > 0
    assert full_key.startswith(made.prefix)
    assert sorted(k.name for k in listed) == ["from the sdk", "mine"]
    assert [k.name for k in sdk.list_api_keys()] == ["mine"]
