"""``onnx``: Cargos on onnxruntime (CPU). One task today, ``ocr`` (the ``ocr-text`` Cargo):
text recognition with the PP-OCRv4 models of the ``rapidocr-onnxruntime`` wheel (see
:mod:`..ocr`); an assignment of another ``onnx_task_type`` fails at once.

An optional extra (``pip install 'island-cli[onnx]'``): :func:`available` says whether it
is installed, and the agent advertises the runtime only then. The models are loaded on
the first job and run in a worker thread; a cancel or the time limit stops the model
that is running. Input ``{"image": <base64 PNG, JPEG or WebP>}``; the job's output is the
recognized text, one line per line; the ``done`` event carries the lines with their
boxes and confidence (``result``) and the usage: ``milliseconds`` the Island spent and
the image's ``pixels``.
"""

import asyncio
import base64
import binascii
import importlib.util
import io
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from . import Event, JobFailed

FORMATS = {"PNG", "JPEG", "WEBP"}
MAX_PIXELS = 16_000_000
MAX_RESULT_BYTES = 200_000
TASKS = ("ocr",)  # the assignment's onnx_task_type


def available() -> bool:
    """Whether the extra is installed: onnxruntime, numpy, Pillow and the models."""
    needed = ("onnxruntime", "numpy", "PIL")
    if any(importlib.util.find_spec(name) is None for name in needed):
        return False
    from ..ocr import models_dir

    return models_dir() is not None


def decode_image(job_input: Any) -> Any:
    """The input's image as a Pillow image (RGB, transparency on white); JobFailed with
    the reason when it is not a PNG, JPEG or WebP of at most MAX_PIXELS."""
    from PIL import Image, UnidentifiedImageError

    data = job_input.get("image") if isinstance(job_input, dict) else None
    if not isinstance(data, str) or not data:
        raise JobFailed('Input needs "image": a base64 PNG, JPEG or WebP')
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise JobFailed("image is not valid base64") from None
    try:
        with Image.open(io.BytesIO(raw)) as opened:
            if opened.format not in FORMATS:
                raise JobFailed(f"image must be PNG, JPEG or WebP, not {opened.format}")
            if opened.width * opened.height > MAX_PIXELS:
                raise JobFailed(f"image has more than {MAX_PIXELS} pixels")
            opened.load()
            image = opened.convert("RGBA")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise JobFailed(f"image cannot be decoded: {exc}") from None
    canvas = Image.new("RGBA", image.size, "white")
    return Image.alpha_composite(canvas, image).convert("RGB")


class OnnxRuntime:
    name = "onnx"
    tasks = TASKS  # advertised in the heartbeat (performance_estimates.onnx_tasks)

    def __init__(self, *, threads: int = 0):
        self.threads = threads
        self._reader: Any = None
        self._lock = threading.Lock()  # one job's inference at a time: they share the cores

    def _load(self) -> Any:
        from ..ocr import Reader, models_dir

        if self._reader is None:
            folder = models_dir()
            if folder is None:
                raise JobFailed("The OCR models are not installed: pip install 'island-cli[onnx]'")
            self._reader = Reader(folder, threads=self.threads)
        return self._reader

    async def run(self, job: dict[str, Any]) -> AsyncIterator[Event]:
        from ..ocr import Cancelled, Run

        task = job.get("onnx_task_type") or "ocr"
        if task not in TASKS:
            raise JobFailed(f"This Island has no ONNX model for the task {str(task)[:50]!r}")
        run = Run()

        def work() -> tuple[list[Any], int, Any]:
            with self._lock:
                started = time.perf_counter()
                image = decode_image(job.get("input"))  # here: a large one takes a while
                lines = self._load().read(image, run)
                return lines, round((time.perf_counter() - started) * 1000), image.size

        worker = asyncio.ensure_future(asyncio.to_thread(work))
        try:
            lines, milliseconds, (width, height) = await asyncio.shield(worker)
        except asyncio.CancelledError:
            run.cancel()
            await asyncio.wait([worker])
            if not worker.cancelled():
                worker.exception()  # retrieved: Cancelled is the expected end of a cancel
            raise
        except Cancelled:
            raise JobFailed("OCR was stopped") from None
        text = "\n".join(line.text for line in lines)
        if text:
            yield {"type": "token", "content": text}
        yield {
            "type": "done",
            "usage": {"milliseconds": milliseconds, "pixels": width * height},
            "result": {"width": width, "height": height, "lines": _within_limit(lines)},
        }


def _within_limit(lines: list[Any]) -> list[dict[str, Any]]:
    """The lines that fit in a status message (the coordinator takes 256 KiB): the text
    is the job's output in full, the boxes of a huge page may stop short."""
    kept, size = [], 0
    for line in map(asdict, lines):
        size += len(json.dumps(line)) + 1
        if size > MAX_RESULT_BYTES:
            break
        kept.append(line)
    return kept
