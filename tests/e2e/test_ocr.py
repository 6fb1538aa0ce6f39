"""OCR end to end: an image drawn here, submitted over the live server's API, placed on
an Island that advertises the onnx runtime, read by the reference agent's PP-OCRv4
models, and its text, lines and usage back through the API; a damaged image fails on
the Island with the decoder's reason and its hold released."""

import base64
import io
import json
import re
from decimal import Decimal

import httpx
import pytest
from click.testing import CliRunner
from django.conf import settings
from island_cli.main import cli
from PIL import Image, ImageDraw, ImageFont
from playwright.sync_api import expect

from billing.selectors import available_credits
from compute.models import Island
from tests.browser_fixtures import login
from tests.e2e.conftest import PASSWORD, eventually, online, pair
from tests.e2e.test_jobs import get_job

onnx = pytest.importorskip("island_cli.agent.runtimes.onnx")
if not onnx.available():
    pytest.skip("the agent's onnx extra is not installed", allow_module_level=True)


PRICING = {"workloads": {"ocr-text": "0.001"}}  # within the Cargo's price


def drawn(text: str, size=(900, 220)) -> bytes:
    """A PNG of ``text``, black on white, in Pillow's own scalable font."""
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text((40, 60), text, fill="black", font=ImageFont.load_default(72))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def submit_image(e2e, key: str, png: bytes) -> str:
    body = {"workload": "ocr-text", "input": {"image": base64.b64encode(png).decode()}}
    with e2e.client(key) as client:
        response = client.post("/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"]


def finished(e2e, key: str, job_id: str) -> dict:
    return eventually(
        lambda: (
            (job := get_job(e2e, key, job_id))["status"] not in ("pending", "queued", "running")
            and job
        ),
        timeout=60,
        interval=0.5,  # within the API's rate limit
    )


def test_text_drawn_in_an_image_comes_back_from_the_islands_onnx_runtime(e2e, account, agent):
    user, key = account
    reader = agent("reader", pricing=PRICING)
    pair(reader, user)
    island = online(reader)
    assert "onnx" in Island.objects.get(pk=island.pk).runtimes
    before = available_credits(user=user)

    job = finished(e2e, key, submit_image(e2e, key, drawn("ARCHIPELAGO 2026")))

    assert job["status"] == "completed", job
    assert job["island_id"] == str(island.pk)
    assert job["output"] == "ARCHIPELAGO 2026"
    [line] = job["result"]["lines"]
    assert line["text"] == "ARCHIPELAGO 2026"
    assert line["confidence"] > 0.9
    assert len(line["box"]) == 4
    assert job["usage"]["pixels"] == 900 * 220
    assert job["usage"]["milliseconds"] > 0  # the Island's own time, by its clock
    assert Decimal(str(job["usage"]["credits_used"])) > 0
    assert available_credits(user=user) == before - Decimal(str(job["usage"]["credits_used"]))


def test_an_image_of_megabytes_reaches_the_island_and_is_read(e2e, account, agent):
    user, key = account
    reader = agent("reader", pricing=PRICING)
    pair(reader, user)
    online(reader)
    png = drawn("ARCHIPELAGO 2026")
    png += b"\0" * (settings.JOB_IMAGE_MAX_BYTES - len(png))  # after IEND: still a PNG

    job = finished(e2e, key, submit_image(e2e, key, png))

    assert job["status"] == "completed", job
    assert job["output"] == "ARCHIPELAGO 2026"


def test_the_demo_island_takes_ocr_but_no_onnx_task_it_has_no_model_for(
    e2e, account, agent, client
):
    """GIVEN only the demo Island online, with its onnx runtime (OCR models alone)
    WHEN a Whisper job is submitted and the Try page is opened
    THEN the job waits for an Island that can run it, and the page offers OCR only."""
    user, key = account
    reader = agent("reader", pricing=PRICING)
    pair(reader, user)
    island = online(reader)
    estimates = Island.objects.get(pk=island.pk).metrics["performance_estimates"]
    assert "onnx" in estimates["supported_runtimes"]
    assert estimates["onnx_tasks"] == ["ocr"]

    speech = {"workload": "onnx-whisper-tiny", "input": {"audio": "aGVsbG8="}}
    with e2e.client(key) as api:
        waiting = api.post("/jobs", json=speech).json()["data"]
    client.force_login(user)  # a session in the database the live server reads
    cookie = {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}
    page = httpx.get(f"{e2e.url}/try", cookies=cookie).text

    assert (waiting["status"], waiting["queue"]["reason"]) == ("queued", "no_island")
    offered = set(re.findall(r'<option value="([^"]+)"', page))
    assert "ocr-text" in offered
    assert "onnx-whisper-tiny" not in offered


def test_an_image_damaged_past_its_header_fails_on_the_island_and_its_hold_is_released(
    e2e, account, agent
):
    user, key = account
    reader = agent("reader", pricing=PRICING)
    pair(reader, user)
    online(reader)
    before = available_credits(user=user)
    png = drawn("cut short")

    job = finished(e2e, key, submit_image(e2e, key, png[: len(png) // 2]))  # header intact

    assert job["status"] == "failed", job
    assert "image cannot be decoded" in job["error"]
    assert job["usage"]["credits_used"] == 0
    assert available_credits(user=user) == before


def test_a_non_image_is_refused_by_the_live_server_before_any_island_sees_it(e2e, account):
    _, key = account
    with e2e.client(key) as client:
        response = client.post(
            "/jobs", json={"workload": "ocr-text", "input": {"image": "aGVsbG8="}}
        )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_image"


def test_the_cli_reads_an_image_file_and_prints_its_text_or_its_lines(
    e2e, account, agent, tmp_path
):
    user, key = account
    reader = agent("reader", pricing=PRICING)
    pair(reader, user)
    online(reader)
    scan = tmp_path / "scan.png"
    scan.write_bytes(drawn("ARCHIPELAGO 2026"))

    def island(*args: str):
        env = {"HOME": str(tmp_path), "ARCHIPELAG_API_KEY": None, "ISLAND_CONFIG": None}
        result = CliRunner().invoke(cli, ["--api-url", e2e.url, "--api-key", key, *args], env=env)
        assert result.exit_code == 0, result.output
        return result.stdout

    assert island("ocr", str(scan)) == "ARCHIPELAGO 2026\n"
    data = json.loads(island("ocr", str(scan), "--format", "json"))
    assert data["text"] == "ARCHIPELAGO 2026"
    assert (data["width"], data["height"]) == (900, 220)
    [line] = data["lines"]
    assert line["text"] == "ARCHIPELAGO 2026"
    assert len(line["box"]) == 4
    assert data["usage"]["pixels"] == 900 * 220
    streamed = island("jobs", "submit", "--workload", "ocr-text", "--file", str(scan), "--stream")
    assert streamed == "ARCHIPELAGO 2026\n"


@pytest.mark.browser
def test_an_image_dropped_on_the_try_page_shows_its_text_and_boxes(
    e2e, account, agent, page, tmp_path
):
    user, _ = account
    reader = agent("reader", pricing=PRICING)
    pair(reader, user)
    online(reader)
    png = drawn("ARCHIPELAGO 2026")
    login(page, e2e, user.email, PASSWORD)

    page.goto(f"{e2e.url}/try")
    page.get_by_label("Cargo").select_option("ocr-text")
    dropped = page.evaluate_handle(
        """(data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "scan.png", { type: "image/png" }));
            return transfer;
        }""",
        base64.b64encode(png).decode(),
    )
    page.dispatch_event("[data-try-drop=image]", "drop", {"dataTransfer": dropped})
    expect(page.get_by_text("scan.png")).to_be_visible()
    page.get_by_role("button", name="Run").click()

    expect(page.locator("[data-try-output][data-done]")).to_have_text(
        "ARCHIPELAGO 2026", timeout=60_000
    )
    expect(page.locator("[data-try-lines] tbody tr td").first).to_have_text("ARCHIPELAGO 2026")
    expect(page.locator("[data-try-picture] polygon")).to_have_count(1)
    expect(page.locator("[data-try-status]")).to_contain_text("completed")
