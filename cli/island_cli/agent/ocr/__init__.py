"""Text recognition (OCR) with the PP-OCRv4 models that the ``rapidocr-onnxruntime`` wheel
ships (Apache-2.0), run on onnxruntime with our own pre- and post-processing in numpy
and Pillow (the wheel's own pipeline imports OpenCV, which needs libGL).

Detection (DB): the image, scaled so that its short side is about 736 px and its long side
at most 2000 px, gives a text-probability map; the regions above 0.3 become rotated
boxes, grown by DB's unclip ratio. Recognition (CRNN, CTC): each box is cut out upright,
scaled to 48 px high, and its greedy CTC decoding with the model's own character list
(in the model's metadata) is the line's text. Upside-down text is not turned (the wheel's
angle classifier is not used).
"""

import importlib.util
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from .geometry import expand, min_area_rect, regions

PACKAGE = "rapidocr_onnxruntime"
DETECTION_MODEL = "ch_PP-OCRv4_det_infer.onnx"
RECOGNITION_MODEL = "ch_PP-OCRv4_rec_infer.onnx"
SHORT_SIDE, LONG_SIDE = 736, 2000
THRESHOLD, BOX_THRESHOLD, UNCLIP_RATIO, MIN_SIZE, MAX_REGIONS = 0.3, 0.5, 1.6, 3, 1000
LINE_HEIGHT, LINE_MIN_WIDTH, BATCH = 48, 320, 6
MIN_CONFIDENCE = 0.5


class Cancelled(Exception):
    """The job was cancelled (or ran out of time) while the models ran."""


@dataclass(frozen=True)
class Line:
    text: str
    confidence: float
    box: list[list[int]]  # top-left, top-right, bottom-right, bottom-left (x, y)


def models_dir() -> Path | None:
    """Where the wheel keeps its models, found without importing the package (its
    ``__init__`` imports OpenCV)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        folder = Path(location) / "models"
        if (folder / DETECTION_MODEL).is_file() and (folder / RECOGNITION_MODEL).is_file():
            return folder
    return None


class Reader:
    """Both models, loaded once; ``read`` may be called from any thread."""

    def __init__(self, folder: Path, *, threads: int = 0):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        cpu = ["CPUExecutionProvider"]
        self.detector = ort.InferenceSession(str(folder / DETECTION_MODEL), options, cpu)
        self.recognizer = ort.InferenceSession(str(folder / RECOGNITION_MODEL), options, cpu)
        characters = self.recognizer.get_modelmeta().custom_metadata_map["character"]
        self.characters = ["", *characters.splitlines(), " "]  # CTC blank first

    def read(self, image: Image.Image, run: "Run") -> list[Line]:
        bgr = np.asarray(image.convert("RGB"))[:, :, ::-1]
        boxes = self._detect(bgr, run)
        crops = [_crop(image, box) for box in boxes]
        texts = self._recognize(crops, run)
        return [
            Line(text, round(confidence, 4), box.round().astype(int).tolist())
            for box, (text, confidence) in zip(boxes, texts, strict=True)
            if text.strip() and confidence >= MIN_CONFIDENCE
        ]

    def _detect(self, bgr: np.ndarray, run: "Run") -> list[np.ndarray]:
        height, width = bgr.shape[:2]
        scale = min(max(1.0, SHORT_SIDE / min(height, width)), LONG_SIDE / max(height, width))
        size_w = max(32, round(width * scale / 32) * 32)
        size_h = max(32, round(height * scale / 32) * 32)
        resized = Image.fromarray(np.ascontiguousarray(bgr)).resize(
            (size_w, size_h), Image.Resampling.BILINEAR
        )
        tensor = (np.asarray(resized, dtype=np.float32) / 255 - 0.5) / 0.5
        tensor = tensor.transpose(2, 0, 1)[np.newaxis]
        probability = run.infer(self.detector, tensor)[0, 0]
        mask = probability > THRESHOLD
        dilated = mask.copy()  # DB's 2x2 dilation
        dilated[1:, :] |= mask[:-1, :]
        dilated[:, 1:] |= mask[:, :-1]
        dilated[1:, 1:] |= mask[:-1, :-1]
        boxes = []
        for region in regions(dilated, probability, MAX_REGIONS):
            box, w, h = min_area_rect(region.points)
            if min(w, h) < MIN_SIZE or region.score < BOX_THRESHOLD:
                continue
            box = expand(box, w, h, UNCLIP_RATIO)
            if min(w, h) + 2 * (w * h * UNCLIP_RATIO / (2 * (w + h))) < MIN_SIZE + 2:
                continue
            box = box * [width / size_w, height / size_h]
            box = np.clip(box.round(), 0, [width - 1, height - 1])
            if np.linalg.norm(box[0] - box[1]) <= 3 or np.linalg.norm(box[0] - box[3]) <= 3:
                continue
            boxes.append(box)
        return _reading_order(boxes)

    def _recognize(self, crops: list[Image.Image], run: "Run") -> list[tuple[str, float]]:
        ratios = [crop.width / crop.height for crop in crops]
        order = np.argsort(ratios, kind="stable")
        results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        for first in range(0, len(crops), BATCH):
            batch = order[first : first + BATCH]
            widest = max(LINE_MIN_WIDTH / LINE_HEIGHT, *(ratios[i] for i in batch))
            tensor = np.stack([_line_tensor(crops[i], widest) for i in batch])
            scores = run.infer(self.recognizer, tensor)
            for index, row in zip(batch, scores, strict=True):
                results[index] = self._decode(row)
        return results

    def _decode(self, scores: np.ndarray) -> tuple[str, float]:
        """Greedy CTC: the best class at each step, repeats merged, blanks dropped."""
        best, probability = scores.argmax(axis=1), scores.max(axis=1)
        keep = np.ones(len(best), dtype=bool)
        keep[1:] = best[1:] != best[:-1]
        keep &= best != 0
        text = "".join(self.characters[i] for i in best[keep] if i < len(self.characters))
        return text, float(probability[keep].mean()) if keep.any() else 0.0


class Run:
    """One job's inference calls: a cancel stops the model that is running (onnxruntime's
    ``terminate``) and any that would follow."""

    def __init__(self) -> None:
        self.options = ort.RunOptions()
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()
        self.options.terminate = True

    def infer(self, session: ort.InferenceSession, tensor: np.ndarray) -> np.ndarray:
        if self.cancelled.is_set():
            raise Cancelled
        name = session.get_inputs()[0].name
        try:
            return session.run(None, {name: tensor.astype(np.float32)}, self.options)[0]
        except Exception:
            if self.cancelled.is_set():
                raise Cancelled from None
            raise


def _crop(image: Image.Image, box: np.ndarray) -> Image.Image:
    """The box cut out upright (a perspective transform); tall ones turned to read left
    to right."""
    width = max(1, int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3]))))
    height = max(1, int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2]))))
    quad = [float(c) for corner in (box[0], box[3], box[2], box[1]) for c in corner]
    crop = image.convert("RGB").transform(
        (width, height), Image.Transform.QUAD, quad, Image.Resampling.BICUBIC
    )
    if height / width >= 1.5:
        crop = crop.transpose(Image.Transpose.ROTATE_90)
    return crop


def _line_tensor(crop: Image.Image, widest: float) -> np.ndarray:
    """A 3 x 48 x W tensor (BGR, in [-1, 1]), the crop on the left, zeros after it."""
    full_width = int(LINE_HEIGHT * widest)
    width = min(full_width, math.ceil(LINE_HEIGHT * crop.width / crop.height))
    resized = crop.resize((width, LINE_HEIGHT), Image.Resampling.BILINEAR)
    pixels = (np.asarray(resized, dtype=np.float32)[:, :, ::-1] / 255 - 0.5) / 0.5
    tensor = np.zeros((3, LINE_HEIGHT, full_width), dtype=np.float32)
    tensor[:, :, :width] = pixels.transpose(2, 0, 1)
    return tensor


def _reading_order(boxes: list[np.ndarray]) -> list[np.ndarray]:
    """Top to bottom, and left to right within a line (tops less than 10 px apart)."""
    ordered = sorted(boxes, key=lambda b: (b[0][1], b[0][0]))
    for i in range(len(ordered) - 1):
        for j in range(i, -1, -1):
            a, b = ordered[j], ordered[j + 1]
            if abs(b[0][1] - a[0][1]) < 10 and b[0][0] < a[0][0]:
                ordered[j], ordered[j + 1] = b, a
            else:
                break
    return ordered
