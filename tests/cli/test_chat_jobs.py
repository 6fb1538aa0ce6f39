"""`island chat` and `island jobs ...` against the live server; the test publishes the
jobs' events as the coordinator does once an Island answers."""

import base64
import json

import pytest
from island_cli.api import EXIT_NOT_FOUND, EXIT_USAGE
from PIL import Image

from compute.models import Cargo, Job
from compute.seed import seed_cargos
from compute.services.jobs import client_event
from compute.services.lifecycle import event_token
from compute.services.publish import publish_job_events
from portal.models import User
from tests.compute.jobs_support import _fresh_index, give_up_once_streamed, streams  # noqa: F401
from tests.compute.test_openai_format import answer, failure, reply
from tests.factories import IslandFactory

pytestmark = pytest.mark.usefixtures("streams")


@pytest.fixture
def island(run, live, key):
    """`island` with the live server's URL and the account's key, and the seed Cargos."""
    seed_cargos()

    def invoke(*args: str):
        return run("--api-url", live.url, "--api-key", key, *args)

    return invoke


def a_job(**fields) -> Job:
    fields.setdefault("status", "running")
    cargo = Cargo.objects.get(slug="llm-chat")
    return Job.objects.create(
        user=User.objects.get(), cargo=cargo, input={"prompt": "Hi"}, **fields
    )


@pytest.fixture
def demo_island(island):
    """The only Island online, as `make run`'s demo Island: no GPU."""
    return IslandFactory(capabilities={"cpu_cores": 4, "ram_mb": 16384, "gpu_vram_mb": 0})


def test_chat_streams_the_answer_token_by_token(island):
    answer(reply)
    result = island("chat", "Hello island")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hi there!\n"


def test_chat_passes_its_options_and_waits_with_no_stream(island):
    answer(reply)
    result = island(
        "chat", "Hello island", "-s", "Be brief", "-m", "50", "-t", "0.3", "-w", "llm-chat",
        "--no-stream",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hi there!\n"
    job_input = Job.objects.get().input
    assert job_input["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Hello island"},
    ]
    assert (job_input["max_tokens"], job_input["temperature"]) == (50, 0.3)


def test_chat_as_json_gives_the_whole_answer(island):
    answer(reply)
    result = island("chat", "Hello island", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["content"] == "Hi there!"
    assert data["usage"]["total_tokens"] == 5
    assert data["finish_reason"] == "stop"


def test_chat_reports_a_failed_job(island):
    answer(failure)
    result = island("chat", "Hello island")
    assert result.exit_code == 1
    assert "Out of memory" in result.stderr


def test_chat_refuses_a_temperature_out_of_range(island):
    result = island("chat", "Hi", "-t", "3")
    assert result.exit_code == EXIT_USAGE


def test_jobs_submit_prints_the_new_jobs_id(island):
    result = island("jobs", "submit", "--workload", "llm-chat", "--input", '{"prompt": "Hi"}')
    assert result.exit_code == 0, result.output
    job = Job.objects.get()
    assert result.stdout == f"{job.pk}\n"
    assert job.input == {"prompt": "Hi"}


def test_jobs_submit_with_stream_prints_the_output(island):
    answer(reply)
    result = island(
        "jobs", "submit", "--workload", "llm-chat", "--input", '{"prompt": "Hi"}', "--stream"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hi there!\n"


def test_jobs_submit_refuses_input_that_is_not_a_json_object(island):
    result = island("jobs", "submit", "--workload", "llm-chat", "--input", "[1, 2]")
    assert result.exit_code == EXIT_USAGE
    assert "must be a JSON object" in result.stderr


def test_jobs_list_has_the_seed_pages_columns(island):
    job = a_job(status="completed")
    result = island("jobs", "list")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split() == ["ID", "STATUS", "WORKLOAD", "DURATION", "CREATED"]
    assert row.split()[:4] == [str(job.pk), "completed", "llm-chat", "-"]


def test_jobs_list_as_json_and_paged(island):
    for _ in range(3):
        a_job()
    result = island("jobs", "list", "--limit", "2", "--offset", "1", "--format", "json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 2


def test_jobs_get_shows_one_job(island):
    job = a_job(status="failed", error="Out of memory")
    result = island("jobs", "get", str(job.pk))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Job {job.pk}\n")
    assert "Status:" in result.stdout
    assert "failed" in result.stdout
    assert "Out of memory" in result.stdout


def test_jobs_get_of_an_unknown_job_exits_not_found(island):
    result = island("jobs", "get", "00000000-0000-0000-0000-000000000000")
    assert result.exit_code == EXIT_NOT_FOUND


def test_jobs_stream_prints_tokens_and_a_progress_bar(island):
    job = a_job()
    publish_job_events(
        job.pk,
        [
            client_event(job.pk, "1:p:1", "progress", step=1, total=2),
            client_event(job.pk, "1:p:2", "progress", step=2, total=2),
            event_token(job.pk, 1, 1, "Done"),
            client_event(job.pk, "done", "done", usage={"total_tokens": 1}),
        ],
    )
    result = island("jobs", "stream", str(job.pk))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Done\n"
    assert "] 1/2" in result.stderr
    assert "] 2/2" in result.stderr
    assert "#" * 10 in result.stderr


def test_jobs_stream_as_json_prints_one_event_per_line(island):
    job = a_job(status="completed", output="All")
    result = island("jobs", "stream", str(job.pk), "--format", "json")
    assert result.exit_code == 0, result.output
    kinds = [json.loads(line)["type"] for line in result.stdout.splitlines()]
    assert kinds == ["token", "status", "done"]


def test_jobs_stream_of_a_failed_job_fails(island):
    job = a_job(status="failed", error="Out of memory")
    result = island("jobs", "stream", str(job.pk))
    assert result.exit_code == 1
    assert "Out of memory" in result.stderr


def test_jobs_cancel_cancels_a_pending_job(island):
    job = a_job(status="pending")
    result = island("jobs", "cancel", str(job.pk))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Job {job.pk} cancelled\n"
    job.refresh_from_db()
    assert job.status == "cancelled"


def test_chat_says_why_the_job_waits_then_exits_with_why_it_gave_up(island, demo_island):
    give_up_once_streamed()
    result = island("chat", "Hello island", "-w", "gguf-mistral-7b")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Waiting for an Island: no online Island can run this Cargo"
        " (the job gives up after 300 s in the queue)",
        "Error: No Island took the job within 300 s: no online Island can run this Cargo"
        " [job_timeout]",
    ]
    assert result.stdout == ""


def test_chat_with_no_stream_exits_with_why_the_job_gave_up(island, demo_island):
    give_up_once_streamed(streamed=False)
    result = island("chat", "Hello island", "-w", "gguf-mistral-7b", "--no-stream")
    assert result.exit_code == 1
    assert "No Island took the job within 300 s: no online Island can run this Cargo" in (
        result.stderr
    )
    assert "job_timeout, HTTP 504" in result.stderr


def test_jobs_submit_with_stream_says_why_the_job_waits_then_why_it_gave_up(island):
    """GIVEN the only Island that can run the Cargo busy WHEN a job is submitted with
    its own queue limit and followed THEN the CLI says the fitting Islands are busy, then
    exits with the error that ended the wait."""
    host = IslandFactory(max_concurrent_jobs=1)
    Job.objects.create(user=host.owner, cargo=Cargo.objects.get(slug="llm-chat"),
                       island=host, status="running")  # fmt: skip
    giving_up = give_up_once_streamed()
    result = island(
        "jobs", "submit", "--workload", "llm-chat", "--input", '{"prompt": "Hi"}',
        "--queue-timeout", "30", "--stream",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    giving_up.join(5)  # its events go out before its commit
    job = Job.objects.get(status="timeout")
    assert result.stderr.splitlines() == [
        f"Job {job.pk}",
        "Waiting for an Island: all the Islands that can run this Cargo are busy"
        " (the job gives up after 30 s in the queue)",
        f"Error: Job {job.pk} ended with an error: No Island took the job within 30 s:"
        " all the Islands that can run this Cargo are busy",
    ]


def test_jobs_get_shows_why_a_job_waits(island, demo_island):
    result = island(
        "jobs", "submit", "--workload", "gguf-mistral-7b", "--input", '{"prompt": "Hi"}'
    )
    result = island("jobs", "get", result.stdout.strip())
    assert result.exit_code == 0, result.output
    assert "Waiting:   no online Island can run this Cargo" in result.stdout
    assert "Gives up:" in result.stdout


def test_jobs_submit_sends_a_file_base64_in_the_cargos_file_field(island, tmp_path):
    scan = tmp_path / "scan.png"
    Image.new("RGB", (40, 20), "white").save(scan)

    result = island("jobs", "submit", "--workload", "ocr-text", "--file", str(scan))

    assert result.exit_code == 0, result.output
    job = Job.objects.get(pk=result.stdout.strip())
    assert job.input == {"image": base64.b64encode(scan.read_bytes()).decode()}


def test_jobs_submit_refuses_a_file_for_a_cargo_without_a_file_field(island, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")

    result = island("jobs", "submit", "--workload", "llm-chat", "--file", str(notes))

    assert result.exit_code == 1
    assert "The Cargo llm-chat takes no file in its input" in result.output
    assert not Job.objects.exists()


def test_jobs_submit_needs_an_input_or_a_file(island):
    result = island("jobs", "submit", "--workload", "llm-chat")

    assert result.exit_code == EXIT_USAGE
    assert "--input JSON, --file PATH or both" in result.output
