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
    "/api/v1/api-keys/{key_id}": {"patch", "delete"},
    "/api/v1/api-keys/{key_id}/usage": {"get"},
    "/api/v1/api-keys/{key_id}/changes": {"get"},
    "/api/v1/api-keys/changes": {"get"},
}
LIMITS = {"expires_at", "spend_cap_day", "spend_cap_month", "spend_cap_total",
          "jobs_per_minute", "allowed_cargos", "allowed_ips"}  # fmt: skip


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


def test_the_schema_describes_a_keys_limits_scopes_and_usage_windows(schema):
    components = schema["components"]["schemas"]
    for name in ("CreateApiKeyInput", "PatchedUpdateApiKeyInput", "ApiKeyWithUsage"):
        assert set(components[name]["properties"]) >= LIMITS, name
    created = components["CreateApiKeyInput"]["properties"]
    assert "keys:" in created["scopes"]["description"]
    assert "402 key_spend_cap" in created["spend_cap_day"]["description"]
    assert "429 key_job_rate" in created["jobs_per_minute"]["description"]
    assert "403 ip_not_allowed" in created["allowed_ips"]["description"]
    parameters = schema["paths"]["/api/v1/api-keys/{key_id}/usage"]["get"]["parameters"]
    [window] = [p for p in parameters if p["name"] == "window"]
    assert set(window["schema"]["enum"]) == {"day", "7d", "30d", "90d", "month"}


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

    page.get_by_text("/api/v1/api-keys/{key_id}", exact=True).first.wait_for()
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


def _request_strings(schema: dict, node, path: str = "") -> list[tuple[str, dict]]:
    """Every string in a request body of the document, with where it is."""
    if isinstance(node, dict) and "$ref" in node:
        return _request_strings(
            schema, schema["components"]["schemas"][node["$ref"].split("/")[-1]], path
        )
    if not isinstance(node, dict):
        return []
    found = [(path, node)] if node.get("type") == "string" else []
    for key in ("properties",):
        for name, child in node.get(key, {}).items():
            found += _request_strings(schema, child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found += _request_strings(schema, node[key], f"{path}[]")
    for key in ("oneOf", "anyOf", "allOf"):
        for child in node.get(key, []):
            found += _request_strings(schema, child, path)
    return found


def test_no_request_text_the_document_allows_is_only_whitespace_that_the_api_trims(schema):
    """GIVEN every text field of a request body that may not be empty
    THEN the document refuses text of whitespace or control characters only ("\\r", a
    space, a tab), which the validation trims to nothing and refuses as blank."""
    allowed = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            for where, field in _request_strings(schema, body and body["schema"]):
                if field.get("minLength", 0) < 1 or field.get("enum") or field.get("format"):
                    continue
                pattern = field.get("pattern")
                for blank in ("\r", " ", "\t\n", "\x1f"):
                    if not pattern or re.search(pattern, blank):
                        allowed.append(f"{method.upper()} {path} {where}: {blank!r}")
    assert not allowed
