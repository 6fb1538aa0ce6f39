"""The llmcpp runtime (llama-cpp-python) through the agent's jobs, on a tiny GGUF model
this test writes (tests/agent/tiny_gguf.py). Its weights are random: the text it
generates is gibberish by construction, and these tests check only the mechanics:
tokens stream, usage is reported, a cancel and the time limit stop generation.

llama-cpp-python builds from source (minutes), so it is an optional extra, outside the
test set: `make test-llmcpp` installs it and runs this module."""

import pytest

pytest.importorskip(
    "llama_cpp",
    reason="llama-cpp-python is an optional extra: `make test-llmcpp` installs it and runs this",
)

from .coordinator import job
from .tiny_gguf import LETTERS, write_tiny_model

LONG = 3000  # tokens: seconds of generation, so that a cancel or a limit lands mid-way


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The tiny random GGUF model."""
    return write_tiny_model(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def chat(max_tokens: int) -> dict:
    return {"messages": [{"role": "user", "content": "hello island"}], "max_tokens": max_tokens}


async def test_a_job_streams_the_models_tokens_and_reports_their_usage(
    coordinator, start_agent, model
):
    agent = await start_agent(runtime="llmcpp", model_path=str(model))
    assignment = job("llmcpp", input=chat(12))

    await coordinator.assign(agent.host_id, assignment)

    job_id = assignment["job_id"]
    done = await coordinator.succeeded(job_id, within=60)
    chunks = [o["chunk"] for o in coordinator.of("output", job_id=job_id)]
    assert chunks[-1] == ""
    assert 0 < len(chunks) - 1 <= 12
    text = "".join(chunks)
    assert text.strip()
    assert set(text) <= set(LETTERS + " ")  # gibberish, but made of the model's pieces
    assert done["usage"]["completion_tokens"] == len(chunks) - 1
    assert done["usage"]["prompt_tokens"] > 0
    assert await coordinator.states(job_id) == ["started", "streaming", "succeeded"]


async def test_a_cancel_stops_the_generation(coordinator, start_agent, model):
    agent = await start_agent(runtime="llmcpp", model_path=str(model))
    assignment = job("llmcpp", input=chat(LONG))
    await coordinator.assign(agent.host_id, assignment)
    await coordinator.wait_for("output", job_id=assignment["job_id"], within=60)

    await coordinator.send(agent.host_id, "cancel", {"job_id": assignment["job_id"]})

    await coordinator.wait_for(
        "status", lambda m: m["state"] == "cancelled", job_id=assignment["job_id"]
    )
    outputs = coordinator.of("output", job_id=assignment["job_id"])
    assert len(outputs) < LONG
    assert not any(o["is_final"] for o in outputs)


async def test_a_generation_over_its_time_limit_fails_with_a_timeout(
    coordinator, start_agent, model
):
    agent = await start_agent(runtime="llmcpp", model_path=str(model))
    assignment = job("llmcpp", input=chat(LONG), timeout_seconds=1.5)

    await coordinator.assign(agent.host_id, assignment)

    [failed] = await coordinator.wait_for(
        "status", lambda m: m["state"] == "failed", job_id=assignment["job_id"], within=60
    )
    assert failed["error"] == "Timeout: job exceeded 1.5s limit"
    assert 0 < len(coordinator.of("output", job_id=assignment["job_id"])) < LONG
