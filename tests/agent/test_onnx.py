"""The onnx runtime on its own: OCR with the PP-OCRv4 models of the rapidocr wheel."""

import asyncio
import base64
import io
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

onnx = pytest.importorskip("island_cli.agent.runtimes.onnx")
if not onnx.available():
    pytest.skip("the agent's onnx extra is not installed", allow_module_level=True)

from island_cli.agent.ocr.geometry import min_area_rect, regions  # noqa: E402
from island_cli.agent.runtimes import JobFailed  # noqa: E402


def drawn(text: str, size=(900, 220), image_format="PNG", mode="RGB") -> str:
    """A base64 image of ``text`` in black on white, in Pillow's scalable font."""
    image = Image.new(mode, size, "white")
    ImageDraw.Draw(image).text((40, 60), text, fill="black", font=ImageFont.load_default(72))
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def runtime():
    """One runtime for the module: its models load on the first job."""
    return onnx.OnnxRuntime()


async def run(runtime, job_input, **fields):
    return [event async for event in runtime.run({"input": job_input, **fields})]


async def test_it_reads_the_text_of_an_image_with_its_box_and_confidence(runtime):
    events = await run(runtime, {"image": drawn("ARCHIPELAGO 2026")}, onnx_task_type="ocr")

    assert [e["type"] for e in events] == ["token", "done"]
    assert events[0]["content"] == "ARCHIPELAGO 2026"
    done = events[1]
    assert done["usage"]["pixels"] == 900 * 220
    assert done["usage"]["milliseconds"] > 0
    [line] = done["result"]["lines"]
    assert line["text"] == "ARCHIPELAGO 2026"
    assert line["confidence"] > 0.9
    xs, ys = [p[0] for p in line["box"]], [p[1] for p in line["box"]]
    assert 20 < min(xs) < 60
    assert 650 < max(xs) < 760
    assert 60 < min(ys) < 90
    assert 120 < max(ys) < 160
    assert done["result"]["width"] == 900
    assert done["result"]["height"] == 220


async def test_it_reads_jpeg_webp_and_transparent_png_too(runtime):
    for image_format, mode in (("JPEG", "RGB"), ("WEBP", "RGB"), ("PNG", "RGBA")):
        image = drawn("HARBOR", image_format=image_format, mode=mode)
        events = await run(runtime, {"image": image})
        assert events[0]["content"] == "HARBOR", image_format


async def test_an_image_without_text_gives_an_empty_output(runtime):
    events = await run(runtime, {"image": drawn("")})

    assert events == [
        {
            "type": "done",
            "usage": {"milliseconds": events[0]["usage"]["milliseconds"], "pixels": 900 * 220},
            "result": {"width": 900, "height": 220, "lines": []},
        }
    ]


@pytest.mark.parametrize(
    ("job_input", "message"),
    [
        ({"text": "no image"}, 'Input needs "image"'),
        ({"image": "not base64!"}, "not valid base64"),
        ({"image": base64.b64encode(b"just some text").decode()}, "cannot be decoded"),
        ({"image": drawn("x")[:200]}, "cannot be decoded"),  # cut short
        ({"image": drawn("x", image_format="GIF")}, "must be PNG, JPEG or WebP, not GIF"),
    ],
)
async def test_a_bad_image_fails_the_job_with_the_reason(runtime, job_input, message):
    with pytest.raises(JobFailed, match=message):
        await run(runtime, job_input)


async def test_an_image_of_too_many_pixels_fails_before_decoding(runtime, monkeypatch):
    monkeypatch.setattr(onnx, "MAX_PIXELS", 900 * 220 - 1)

    with pytest.raises(JobFailed, match="more than"):
        await run(runtime, {"image": drawn("x")})


async def test_the_boxes_stop_short_of_the_status_limit_but_the_text_is_whole(runtime, monkeypatch):
    monkeypatch.setattr(onnx, "MAX_RESULT_BYTES", 20)

    events = await run(runtime, {"image": drawn("ARCHIPELAGO 2026")})

    assert events[0]["content"] == "ARCHIPELAGO 2026"
    assert events[1]["result"]["lines"] == []


async def test_another_onnx_task_fails_at_once(runtime):
    with pytest.raises(JobFailed, match="no ONNX model for the task 'text-to-speech'"):
        await run(runtime, {"image": drawn("x")}, onnx_task_type="text-to-speech")


async def test_a_cancel_stops_the_models_that_run(runtime):
    await run(runtime, {"image": drawn("warm")})  # models loaded: the cancel hits inference
    big = drawn("cancel me", size=(2000, 2000))
    task = asyncio.ensure_future(run(runtime, {"image": big}))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.5
    events = await run(runtime, {"image": drawn("after")})  # the runtime still works
    assert events[0]["content"] == "after"


def test_the_regions_of_a_map_are_its_connected_parts_diagonals_included():
    mask = np.zeros((10, 10), dtype=bool)
    mask[1:3, 1:4] = True  # a block
    mask[3, 4] = True  # touching it by a corner only
    mask[7:9, 6:9] = True  # apart
    found = regions(mask, mask.astype(float), limit=10)

    assert sorted(len(r.points) for r in found) == [4, 6]
    assert all(r.score == 1.0 for r in found)


def test_the_smallest_rectangle_around_a_turned_box_has_its_size():
    angle = np.radians(30)
    u, v = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    points = np.array([a * u + b * v for a in np.linspace(0, 40, 9) for b in np.linspace(0, 10, 5)])

    box, width, height = min_area_rect(points + 100)

    assert sorted([width, height]) == pytest.approx([10, 40])
    assert box[0][0] < box[1][0]
    assert box[0][1] < box[3][1]
