"""The Cargo catalog every coordinator starts with: each category and runtime of the
product notes. ``seed_cargos`` is idempotent (update_or_create by slug); admins may add
or edit Cargos afterwards in the Django admin."""

from decimal import Decimal
from typing import Any

from compute.chat import MAX_TOKENS, TEMPERATURE, messages_schema
from compute.models import Cargo

CHAT_INPUT = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "maxLength": 100_000},
        "system": {"type": "string", "maxLength": 100_000},
        "messages": messages_schema(
            role={"enum": ["system", "user", "assistant", "tool"]}, content={"type": "string"}
        ),
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_TOKENS},
        "temperature": {"type": "number", "minimum": TEMPERATURE[0], "maximum": TEMPERATURE[1]},
    },
    "anyOf": [{"required": ["prompt"]}, {"required": ["messages"]}],
}
IMAGE_INPUT = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "maxLength": 10_000},
        "negative_prompt": {"type": "string", "maxLength": 10_000},
        "width": {"type": "integer", "minimum": 64, "maximum": 2048},
        "height": {"type": "integer", "minimum": 64, "maximum": 2048},
        "steps": {"type": "integer", "minimum": 1, "maximum": 150},
        "seed": {"type": "integer"},
    },
    "required": ["prompt"],
}
TEXT_INPUT = {
    "type": "object",
    "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 1_000_000}},
    "required": ["text"],
}
AUDIO_INPUT = {
    "type": "object",
    "properties": {"audio": {"type": "string", "contentEncoding": "base64"}},
    "required": ["audio"],
}
IMAGE_FILE_INPUT = {
    "type": "object",
    "properties": {"image": {"type": "string", "contentEncoding": "base64"}},
    "required": ["image"],
}
OCR_INPUT = {
    "type": "object",
    "properties": {
        "image": {
            "type": "string",
            "contentEncoding": "base64",
            "contentMediaType": "image/*",
            "description": "A PNG, JPEG or WebP image, base64 (8 MiB and 16 megapixels at most)",
        }
    },
    "required": ["image"],
    "additionalProperties": False,
}
URL_INPUT = {
    "type": "object",
    "properties": {"url": {"type": "string", "format": "uri", "maxLength": 2000}},
    "required": ["url"],
}


def cargo(slug: str, name: str, category: str, runtime: str, price: str, **extra: Any) -> dict:
    return {"slug": slug, "name": name, "category": category, "runtime_type": runtime,
            "price_per_job": Decimal(price), **extra}  # fmt: skip


CARGOS = [
    cargo("llm-chat", "LLM Chat (Mistral 7B)", "llm", "container", "0.01",
          description="General chat assistant (Mistral 7B Instruct) in a container",
          required_ram_mb=1024, input_schema=CHAT_INPUT,
          spec={"container_image": "archipelago/llm-chat:mistral-7b", "model_context_size": 4096}),
    cargo("llm-chat-mobile", "LLM Chat Mobile", "llm", "llmcpp", "0.005",
          description="A small chat model for phones and laptops (llama.cpp)",
          required_ram_mb=1024, input_schema=CHAT_INPUT,
          spec={"model_url": "hf://Qwen/Qwen2.5-0.5B-Instruct-GGUF", "model_context_size": 2048}),
    cargo("gguf-mistral-7b", "Mistral 7B Instruct", "llm", "llmcpp", "1.0",
          description="Mistral 7B Instruct v0.2 (Q4_K_M)",
          required_vram_mb=6000, required_ram_mb=8000, input_schema=CHAT_INPUT,
          spec={"model_url": "hf://TheBloke/Mistral-7B-Instruct-v0.2-GGUF",
                "model_context_size": 8192, "model_temperature": 0.7}),
    cargo("sdxl", "Stable Diffusion XL", "image", "container", "0.05",
          description="Text to image, 1024x1024 (SDXL base 1.0) in a container",
          required_vram_mb=8000, required_ram_mb=16000, input_schema=IMAGE_INPUT,
          time_limit_seconds=600, spec={"container_image": "archipelago/sdxl:1.0"}),
    cargo("diffusers-sd-turbo", "SD Turbo", "image", "diffusers", "0.02",
          description="Fast text to image in one to four steps (diffusers)",
          required_vram_mb=4000, required_ram_mb=8000, input_schema=IMAGE_INPUT,
          spec={"model_url": "hf://stabilityai/sd-turbo"}),
    cargo("onnx-whisper-tiny", "Whisper Tiny (speech to text)", "audio", "onnx", "0.01",
          description="Speech recognition, 99 languages (ONNX Runtime)",
          onnx_task_type="automatic-speech-recognition", required_ram_mb=1024,
          input_schema=AUDIO_INPUT, spec={"onnx_model_url": "hf://onnx-community/whisper-tiny"}),
    cargo("onnx-kokoro-tts", "Kokoro (text to speech)", "audio", "onnx", "0.01",
          description="Natural text to speech (ONNX Runtime)", onnx_task_type="text-to-speech",
          required_ram_mb=1024, input_schema=TEXT_INPUT,
          spec={"onnx_model_url": "hf://onnx-community/Kokoro-82M-ONNX"}),
    cargo("onnx-yolo-detection", "YOLO object detection", "vision", "onnx", "0.005",
          description="Finds and labels objects in an image (ONNX Runtime)",
          onnx_task_type="object-detection", required_ram_mb=512, input_schema=IMAGE_FILE_INPUT,
          spec={"onnx_model_url": "hf://onnx-community/yolov10n"}),
    cargo("onnx-sentiment", "Sentiment classifier (DistilBERT)", "text", "onnx", "0.001",
          description="Positive or negative, with a score (DistilBERT SST-2, ONNX Runtime)",
          onnx_task_type="text-classification", required_ram_mb=512, input_schema=TEXT_INPUT,
          spec={"onnx_model_url": "hf://distilbert/distilbert-base-uncased-finetuned-sst-2-english"}),
    cargo("onnx-embeddings", "Text embeddings (MiniLM)", "text", "onnx", "0.001",
          description="384-dimensional sentence embeddings (all-MiniLM-L6-v2, ONNX Runtime)",
          onnx_task_type="feature-extraction", required_ram_mb=512, input_schema=TEXT_INPUT,
          spec={"onnx_model_url": "hf://sentence-transformers/all-MiniLM-L6-v2"}),
    cargo("ocr-text", "Read text in an image (OCR)", "vision", "onnx", "0.002",
          description="The text of a photo or scan, line by line with boxes (PP-OCRv4, "
          "ONNX Runtime on CPU)", onnx_task_type="ocr", required_ram_mb=512,
          input_schema=OCR_INPUT, time_limit_seconds=60),
    cargo("coreml-image-classifier", "Image classifier (iOS, Core ML)", "vision", "coreml",
          "0.002", description="MobileNetV2 image labels on iPhones and iPads (Core ML)",
          required_ram_mb=256, input_schema=IMAGE_FILE_INPUT,
          spec={"model_url": "hf://apple/coreml-mobilenet-v2"}),
    cargo("wasm-wordcount", "Word count (WASM)", "utility", "wasm", "0.0001",
          description="Counts lines, words and bytes of a text; runs sandboxed in WebAssembly",
          input_schema=TEXT_INPUT, time_limit_seconds=60,
          spec={"wasm_url": "builtin:wordcount", "sandbox_tier": "restricted"}),
    cargo("pdf-to-text", "PDF to text", "utility", "container", "0.002",
          description="Extracts the text of a PDF document in a container",
          required_ram_mb=512, input_schema=URL_INPUT,
          spec={"container_image": "archipelago/pdf-to-text:1", "sandbox_tier": "standard"}),
]  # fmt: skip


def seed_cargos() -> tuple[int, int]:
    """Create or update every seed Cargo; returns ``(created, updated)``."""
    created = updated = 0
    for row in CARGOS:
        values = {k: v for k, v in row.items() if k != "slug"}
        _, was_created = Cargo.objects.update_or_create(slug=row["slug"], defaults=values)
        created += was_created
        updated += not was_created
    return created, updated
