"""The OpenAPI 3 schema at /api/v1/schema and the docs page at /api/v1/docs."""

import json
import re

import pytest
import yaml
from django.contrib.staticfiles import finders
from drf_spectacular.validation import validate_schema

MY_PATHS = {
    "/api/v1/health": {"get"},
    "/api/v1/account": {"get"},
    "/api/v1/api-keys": {"get", "post"},
    "/api/v1/api-keys/{key_id}": {"delete"},
}


@pytest.fixture
def schema(anon, db) -> dict:
    response = anon.get("/api/v1/schema?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def test_the_schema_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)


def test_the_schema_lists_the_account_and_key_operations(schema):
    for path, methods in MY_PATHS.items():
        assert methods <= set(schema["paths"][path]), path


def test_the_schema_documents_bearer_keys_and_the_error_shape(schema):
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["apiKey"]["description"],
    }
    assert {"apiKey": []} in schema["paths"]["/api/v1/account"]["get"]["security"]
    assert schema["paths"]["/api/v1/health"]["get"]["security"] == [{}] or not schema["paths"][
        "/api/v1/health"
    ]["get"].get("security")
    error = schema["components"]["schemas"]["Error"]["properties"]["error"]
    assert {"message", "code", "details", "retry_after"} <= set(error["properties"])
    for path in MY_PATHS:
        for operation in schema["paths"][path].values():
            assert "4XX" in operation["responses"]


def test_the_create_key_operation_describes_its_body_and_response(schema):
    post = schema["paths"]["/api/v1/api-keys"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    created = post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]

    assert body.endswith("/CreateApiKeyInput")
    assert set(schema["components"]["schemas"]["CreatedApiKeyResponse"]["properties"]) == {
        "data",
        "key",
    }
    assert created.endswith("/CreatedApiKeyResponse")


def test_the_schema_is_also_served_as_yaml(anon, db):
    response = anon.get("/api/v1/schema")

    assert response.status_code == 200
    assert "/api/v1/api-keys" in yaml.safe_load(response.content)["paths"]


def test_the_unknown_route_catch_all_is_not_in_the_schema(schema):
    assert all(not path.endswith((".", "*", "$")) for path in schema["paths"])


def test_the_docs_page_loads_only_local_assets(anon, db):
    response = anon.get("/api/v1/docs")

    assert response.status_code == 200
    html = response.content.decode()
    assert not re.search(r"(src|href)=\"https?://", html)
    assets = re.findall(r"(?:src|href)=\"/static/([^\"?]+)", html)
    assert len(assets) >= 3
    for asset in assets:
        assert finders.find(asset), asset


@pytest.mark.browser
def test_the_docs_page_renders_the_operations_with_no_outside_network(live, page):
    outside = []

    def only_local(route):
        if route.request.url.startswith(live.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(f"{live.url}/api/v1/docs")

    page.get_by_text("/api/v1/api-keys/{key_id}").wait_for()
    assert page.get_by_text("Create an API key").count() >= 1
    assert outside == []


def test_the_document_is_made_once_per_process_and_format(anon, db, monkeypatch):
    from portal.api.views import SchemaView, document

    document.cache_clear()
    made = []
    generator = SchemaView.generator_class
    monkeypatch.setattr(SchemaView, "generator_class", lambda: made.append(1) or generator())
    first = anon.get("/api/v1/schema?format=json")
    again = anon.get("/api/v1/schema?format=json&anything=else")
    yaml_answer = anon.get("/api/v1/schema")
    assert first.content == again.content
    assert first["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert yaml.safe_load(yaml_answer.content) == json.loads(first.content)
    assert len(made) == 2  # JSON once, YAML once
    document.cache_clear()
