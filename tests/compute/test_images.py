"""Images in job inputs (the ocr-text Cargo): checked at submission, 422 with the reason
and nothing stored or held when one is not a PNG, JPEG or WebP within the limits."""

import base64
import io
import random
import socket
import tracemalloc

import pytest
from django.conf import settings
from PIL import Image

from billing.models import LedgerEntry
from compute.models import Cargo, Job
from compute.seed import seed_cargos
from compute.services.images import check_image
from portal.services import create_api_key


def encoded(image_format="PNG", size=(64, 32)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, format=image_format)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def ocr(db) -> Cargo:
    """The seed's ocr-text Cargo."""
    seed_cargos()
    return Cargo.objects.get(slug="ocr-text")


def submit(api, image):
    body = {"workload": "ocr-text", "input": {"image": image}}
    return api.post("/api/v1/jobs", body, format="json")


def test_the_seed_has_an_ocr_cargo_for_onnx_islands_with_a_price_and_a_time_limit(ocr):
    assert (ocr.category, ocr.runtime_type, ocr.onnx_task_type) == ("vision", "onnx", "ocr")
    assert ocr.price_per_job > 0
    assert ocr.time_limit_seconds == 60
    assert ocr.input_schema["required"] == ["image"]


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "WEBP"])
def test_a_png_jpeg_or_webp_image_is_accepted(api, ocr, image_format):
    response = submit(api, encoded(image_format))

    assert response.status_code == 201, response.json()
    assert Job.objects.get().input == {"image": encoded(image_format)}


@pytest.mark.parametrize(
    ("image", "code", "message"),
    [
        ("not base64 at all!", "invalid_image", "input.image: is not valid base64"),
        (
            base64.b64encode(b"%PDF-1.7 a document").decode(),
            "invalid_image",
            "input.image: must be a PNG, JPEG or WebP image",
        ),
        (encoded("GIF"), "invalid_image", "input.image: must be a PNG, JPEG or WebP image"),
        (
            base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode(),
            "invalid_image",
            "input.image: cannot be read as a PNG image",
        ),
        (
            encoded("PNG", size=(5000, 4000)),
            "image_too_large",
            "input.image: has 5000x4000 pixels, more than 16000000",
        ),
    ],
)
def test_a_bad_image_is_refused_with_422_and_nothing_is_stored_or_held(
    api, ocr, user, image, code, message
):
    entries = LedgerEntry.objects.count()

    response = submit(api, image)

    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["code"], error["message"]) == (code, message)
    assert list(error["details"]) == ["input.image"]
    assert not Job.objects.exists()
    assert LedgerEntry.objects.count() == entries


def test_an_image_over_the_byte_limit_is_refused_before_it_is_decoded(api, ocr, settings):
    settings.JOB_IMAGE_MAX_BYTES = 1000
    settings.JOB_SUBMIT_MAX_BODY = 100_000

    response = submit(api, base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 1000).decode())

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "image_too_large"
    assert not Job.objects.exists()


def test_a_job_submission_may_be_larger_than_other_requests_but_not_without_limit(
    api, ocr, settings
):
    settings.JOB_SUBMIT_MAX_BODY = 3 * 1024 * 1024
    two_mib = "A" * (2 * 1024 * 1024)

    other = api.post("/api/v1/chat/completions", {"model": "x", "pad": two_mib}, format="json")
    noise = Image.frombytes("RGB", (700, 700), random.Random(7).randbytes(700 * 700 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    assert 1024 * 1024 < len(image) < 3 * 1024 * 1024
    job = submit(api, image)  # over the limit of other requests, within its own
    larger = submit(api, two_mib * 2)

    assert other.status_code == 413
    assert other.json()["error"]["code"] == "request_too_large"
    assert job.status_code == 201
    assert larger.status_code == 413
    assert larger.json()["error"]["code"] == "request_too_large"


def test_only_the_header_of_an_image_is_decoded_for_its_checks():
    png = base64.b64decode(encoded("PNG", size=(1200, 1000)))
    padded = base64.b64encode(png + b"\x00" * (6 * 1024 * 1024)).decode()  # after IEND
    tracemalloc.start()
    try:
        size = check_image("input.image", padded)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert size == (1200, 1000)
    assert peak < 512 * 1024  # decoded whole, it would take 6 MiB


def test_the_header_of_a_jpeg_is_found_past_a_large_colour_profile():
    buffer = io.BytesIO()
    Image.new("RGB", (320, 200), "white").save(buffer, format="JPEG", icc_profile=b"p" * 300_000)

    assert check_image("input.image", base64.b64encode(buffer.getvalue()).decode()) == (320, 200)


# --- through a live server: the body is read up to the limit, and no further ---------------
def raw_post(live, key: str, head: bytes, body: bytes = b"") -> bytes:
    """The start of the live server's answer to ``POST /api/v1/jobs`` sent as these
    bytes, while the connection stays open (the body may be cut short on purpose)."""
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as connection:
        connection.sendall(
            b"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {key}\r\n".encode()
            + head
            + b"\r\n"
            + body
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            answer += connection.recv(65536) or b"}"  # closed: nothing more comes
        return answer


def test_a_declared_length_over_the_limit_is_a_413_before_any_of_the_body_is_sent(live, user):
    key = create_api_key(user=user, name="t")[1]
    declared = b"Content-Length: %d\r\n" % (settings.JOB_SUBMIT_MAX_BODY + 1)

    answer = raw_post(live, key, declared)  # and not one byte of the body

    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"request_too_large"' in answer
    assert not Job.objects.exists()


def test_a_chunked_body_is_refused_with_413_once_over_the_limit_without_waiting_for_the_rest(
    live, user
):
    key = create_api_key(user=user, name="t")[1]
    block = 1024 * 1024
    blocks = settings.JOB_SUBMIT_MAX_BODY // block + 1  # over the limit; never ended
    chunks = b"".join(b"%x\r\n%s\r\n" % (block, b"A" * block) for _ in range(blocks))

    answer = raw_post(live, key, b"Transfer-Encoding: chunked\r\n", chunks)

    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"request_too_large"' in answer


def test_an_image_of_the_largest_size_is_accepted_by_a_live_server(live, user):
    seed_cargos()
    key = create_api_key(user=user, name="t")[1]
    noise = Image.frombytes("RGB", (600, 600), random.Random(3).randbytes(600 * 600 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    png = buffer.getvalue()
    png += b"\x00" * (settings.JOB_IMAGE_MAX_BYTES - len(png))  # after IEND: still a PNG
    image = base64.b64encode(png).decode()

    with live.client(key) as client:
        response = client.post("/jobs", json={"workload": "ocr-text", "input": {"image": image}})
        too_large = client.post(
            "/jobs",
            json={
                "workload": "ocr-text",
                "input": {"image": base64.b64encode(png + b"\0").decode()},
            },
        )

    assert response.status_code == 201, response.text
    assert Job.objects.get().input["image"] == image
    assert too_large.status_code == 422
    assert too_large.json()["error"]["code"] == "image_too_large"
