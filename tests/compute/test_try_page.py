"""The "Try a Cargo" page (/try): signed in only; the Cargos an online Island can serve,
chat ones aside (the Chat page has them), each with its input schema for the form."""

import json
import re

from django.urls import reverse

from compute.seed import seed_cargos
from tests.factories import IslandFactory, UserFactory


def test_the_try_page_offers_what_online_islands_serve_but_chat(client, user):
    seed_cargos()
    IslandFactory(
        owner=UserFactory(),
        runtimes=["container", "llmcpp", "wasm", "onnx"],
        capabilities={"cpu_cores": 4, "ram_mb": 16384, "gpu_vram_mb": 0},
    )
    client.force_login(user)

    page = client.get(reverse("try-cargo")).content.decode()

    offered = set(re.findall(r'<option value="([^"]+)"', page))
    assert {"ocr-text", "wasm-wordcount", "onnx-sentiment"} <= offered
    assert "llm-chat" not in offered  # on the Chat page
    assert "sdxl" not in offered  # needs a GPU no online Island has
    schemas = json.loads(re.search(r'id="try-schemas"[^>]*>(.*?)</script>', page).group(1))
    assert schemas["ocr-text"]["properties"]["image"]["contentEncoding"] == "base64"


def test_the_try_page_offers_no_onnx_cargo_whose_task_the_online_islands_lack(client, user):
    seed_cargos()
    IslandFactory(
        owner=UserFactory(),
        runtimes=["wasm", "onnx"],
        metrics={"performance_estimates": {"onnx_tasks": ["ocr"]}},  # as the reference agent
    )
    client.force_login(user)

    page = client.get(reverse("try-cargo")).content.decode()

    offered = set(re.findall(r'<option value="([^"]+)"', page))
    assert {"ocr-text", "wasm-wordcount"} <= offered
    assert not offered & {"onnx-whisper-tiny", "onnx-sentiment", "onnx-embeddings"}
