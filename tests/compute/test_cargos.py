"""The Cargo catalog: seed data, /cargos, /workloads, input schemas and the admin form."""

import pytest

from compute.admin import CargoForm
from compute.models import Cargo
from compute.seed import CARGOS, seed_cargos
from tests.factories import CargoFactory

SEED_FIELDS = {"slug", "name", "description", "runtime_type", "onnx_task_type", "price_per_job",
               "required_vram_mb", "required_ram_mb"}  # fmt: skip


@pytest.fixture
def catalog(db) -> None:
    """The seed Cargo catalog."""
    seed_cargos()


def test_seeding_twice_creates_each_cargo_once_and_updates_edits(db):
    assert seed_cargos() == (len(CARGOS), 0)
    Cargo.objects.filter(slug="llm-chat").update(name="Changed")
    assert seed_cargos() == (0, len(CARGOS))
    assert Cargo.objects.count() == len(CARGOS)
    assert Cargo.objects.get(slug="llm-chat").name == "LLM Chat (Mistral 7B)"


def test_the_seed_covers_every_category_and_runtime(catalog):
    assert {c.category for c in Cargo.objects.all()} == set(Cargo.Category.values)
    assert {c.runtime_type for c in Cargo.objects.all()} == set(Cargo.Runtime.values)


def test_the_seed_has_the_cargos_of_the_seed_pages(catalog):
    chat = Cargo.objects.get(slug="llm-chat")
    assert (chat.name, chat.runtime_type, str(chat.price_per_job)) == (
        "LLM Chat (Mistral 7B)",
        "container",
        "0.010000",
    )
    mistral = Cargo.objects.get(slug="gguf-mistral-7b")
    assert (mistral.runtime_type, mistral.required_vram_mb, mistral.required_ram_mb) == (
        "llmcpp",
        6000,
        8000,
    )
    assert Cargo.objects.get(slug="llm-chat-mobile").runtime_type == "llmcpp"
    assert Cargo.objects.get(slug="wasm-wordcount").spec["wasm_url"] == "builtin:wordcount"


def test_the_catalog_lists_enabled_and_approved_cargos_without_a_key(catalog, anon):
    Cargo.objects.filter(slug="sdxl").update(is_enabled=False)
    Cargo.objects.filter(slug="pdf-to-text").update(is_approved=False)
    response = anon.get("/api/v1/cargos")
    assert response.status_code == 200
    body = response.json()
    slugs = {c["slug"] for c in body["cargos"]}
    assert body["count"] == len(CARGOS) - 2 == len(body["cargos"])
    assert "sdxl" not in slugs
    assert "pdf-to-text" not in slugs
    mistral = next(c for c in body["cargos"] if c["slug"] == "gguf-mistral-7b")
    assert set(mistral) >= SEED_FIELDS
    assert mistral["price_per_job"] == 1.0
    assert mistral["onnx_task_type"] is None


@pytest.mark.parametrize(("query", "expected"), [
    ("runtime_type=onnx", {"onnx-whisper-tiny", "onnx-kokoro-tts", "onnx-yolo-detection", "onnx-sentiment", "onnx-embeddings", "ocr-text"}),
    ("category=image", {"sdxl", "diffusers-sd-turbo"}),
    ("category=llm&runtime_type=llmcpp", {"llm-chat-mobile", "gguf-mistral-7b"}),
])  # fmt: skip
def test_the_catalog_filters_by_runtime_and_category(catalog, anon, query, expected):
    body = anon.get(f"/api/v1/cargos?{query}").json()
    assert {c["slug"] for c in body["cargos"]} == expected
    assert body["count"] == len(expected)


@pytest.mark.parametrize("query", ["runtime_type=cuda", "category=games", "color=red"])
def test_the_catalog_refuses_unknown_filters_with_422(catalog, anon, query):
    response = anon.get(f"/api/v1/cargos?{query}")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_workloads_list_and_detail_have_the_product_notes_shape(catalog, anon):
    body = anon.get("/api/v1/workloads?limit=100").json()
    assert body["meta"] == {"total": len(CARGOS), "limit": 100, "offset": 0}
    row = next(w for w in body["data"] if w["slug"] == "llm-chat")
    expected = {"id", "name", "slug", "description", "runtime_type", "required_vram_mb",
                "required_ram_mb", "price_per_job", "is_enabled"}  # fmt: skip
    assert expected <= set(row)
    assert isinstance(row["id"], int)
    detail = anon.get("/api/v1/workloads/llm-chat").json()["data"]
    assert detail == row


def test_an_unknown_workload_is_a_404_in_the_error_shape(catalog, anon):
    response = anon.get("/api/v1/workloads/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_job_input_that_breaks_the_cargo_schema_is_refused_with_details(catalog, api):
    response = api.post(
        "/api/v1/jobs",
        {"workload": "llm-chat", "input": {"prompt": "Hi", "max_tokens": "lots"}},
        format="json",
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "input.max_tokens" in error["details"]


def test_job_input_missing_a_required_field_is_refused(catalog, api):
    response = api.post("/api/v1/jobs", {"workload": "sdxl", "input": {}}, format="json")
    assert response.status_code == 422
    assert "prompt" in response.json()["error"]["message"]


def test_the_admin_form_refuses_an_invalid_json_schema(db):
    cargo = CargoFactory()
    data = {f: getattr(cargo, f) for f in ("slug", "name", "category", "runtime_type",
            "price_per_job", "required_vram_mb", "required_ram_mb", "time_limit_seconds")}  # fmt: skip
    form = CargoForm(data={**data, "input_schema": '{"type": 12}', "spec": "{}"}, instance=cargo)
    assert not form.is_valid()
    assert "input_schema" in form.errors
    form = CargoForm(
        data={**data, "input_schema": '{"type": "object"}', "spec": "{}"}, instance=cargo
    )
    assert form.is_valid(), form.errors
