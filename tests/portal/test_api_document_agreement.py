"""Where the API and its OpenAPI document disagreed (issue 16, part 4), on the production
ASGI app (its fast lane included): each answer as the document says, never a 500."""

import json

import pytest

from compute.seed import seed_cargos
from portal import services
from portal.api.views import document
from portal.models import ApiKey
from tests.compute.jobs_support import streams  # noqa: F401 - a fixture

MANY = "&".join(f"p{i}=1" for i in range(1001))


@pytest.fixture
def key(live) -> str:
    user = services.sign_up(email="doc@example.com", password="correct horse battery")
    return services.create_api_key(user=user, name="doc", scopes=ApiKey.SCOPES)[1]


def test_revoking_a_key_answers_the_key_as_its_document_says(live, key):
    with live.client(key) as client:
        other = client.post("/api-keys", json={"name": "spare"}).json()["data"]
        response = client.delete(f"/api-keys/{other['id']}")

    answers = json.loads(document("application/vnd.oai.openapi+json"))["paths"][
        "/api/v1/api-keys/{key_id}"]["delete"]["responses"]  # fmt: skip
    assert sorted(answers) == ["200", "4XX"]
    assert answers["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ApiKeyResponse"
    )
    assert response.status_code == 200
    assert response.json()["data"] == other


def test_a_key_name_must_be_a_string(live, key):
    with live.client(key) as client:
        response = client.post("/api-keys", json={"name": 0})

    assert response.status_code == 422
    assert response.json()["error"]["details"] == {"name": ["Not a valid string."]}


@pytest.mark.parametrize(
    "query", ["offset=false&offset=0", "offset=0&offset=false", "offset=0&offset=0", "offset=0.0"]
)
def test_a_repeated_or_non_integer_query_parameter_is_a_422(live, key, query):
    with live.client(key) as client:
        response = client.get(f"/jobs?{query}")

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert "offset" in response.json()["error"]["details"]


@pytest.mark.parametrize(
    "path", ["/api/v1/health", "/api/v1/market/rates", "/api/v1/schema", "/api/v1/jobs"]
)
def test_more_than_a_thousand_query_parameters_is_a_400_in_the_error_shape(live, key, path):
    with live.client(key) as client:
        response = client.get(f"{live.url}{path}?{MANY}")

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "too_many_fields"


def test_more_than_a_thousand_query_parameters_on_a_page_is_a_400(live):
    with live.client() as client:
        response = client.get(f"{live.url}/login?{MANY}")

    assert response.status_code == 400


@pytest.mark.usefixtures("streams")
@pytest.mark.parametrize(
    "extra",
    [{}, {"stream": True}, {"user": "someone"}],
    ids=["fast lane", "streaming", "usual path"],
)
def test_a_nul_character_in_a_chat_message_is_a_422(live, key, extra):
    seed_cargos()
    body = {"model": "llm-chat", "messages": [{"role": "user", "content": "a\u0000b"}], **extra}
    with live.client(key) as client:
        response = client.post("/chat/completions", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


def test_a_seed_is_a_64_bit_integer_as_documented(live, key):
    seed = json.loads(document("application/vnd.oai.openapi+json"))["paths"][
        "/api/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"][
        "schema"]["properties"]["seed"]  # fmt: skip
    # An unknown model is a 404 once the fields are valid: the seed was accepted.
    body = {"model": "no-such-cargo", "messages": [{"role": "user", "content": "hi"}]}
    with live.client(key) as client:
        low = client.post("/chat/completions", json={**body, "seed": -(2**63)})
        high = client.post("/chat/completions", json={**body, "seed": 2**63 - 1})
        huge = client.post("/chat/completions", json={**body, "seed": -(2**80)})

    assert (seed["minimum"], seed["maximum"]) == (-(2**63), 2**63 - 1)
    assert (low.status_code, high.status_code) == (404, 404), low.text
    assert huge.status_code == 422
    assert "seed" in huge.json()["error"]["details"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/jobs", {"workload": "llm-chat", "input": {"prompt": "a\u0000b"}}),
        ("/jobs", {"workload": "llm-chat", "input": {"prompt": "x", "a\u0000": 1}}),
        ("/jobs/batch", {"workload": "llm-chat", "inputs": [{"prompt": "x"}, {"p": ["\u0000"]}]}),
    ],
)
def test_a_nul_character_in_a_job_input_is_a_422(live, key, path, body):
    seed_cargos()
    with live.client(key) as client:
        response = client.post(path, json=body)

    assert response.status_code == 422, response.text
    assert "Null characters" in str(response.json()["error"]["details"])
