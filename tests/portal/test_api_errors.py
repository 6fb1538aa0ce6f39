"""One error shape for everything under /api/v1, and bad input that changes nothing."""

import json

import pytest

from portal import services
from portal.models import ApiKey

MIB = 1024 * 1024


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


def post_raw(api, body: bytes | str, content_type: str = "application/json"):
    return api.generic("POST", "/api/v1/api-keys", body, content_type=content_type)


def test_malformed_json_is_a_400_and_creates_nothing(api, user):
    error = assert_error(post_raw(api, '{"name": "x",'), 400, "invalid_json")

    assert error["message"].startswith("Malformed JSON")
    assert ApiKey.objects.filter(user=user).count() == 1


@pytest.mark.parametrize("body", ["[]", '"name"', "42", "null", b"\xff\xfe{}"])
def test_a_body_that_is_not_a_json_object_is_a_400(api, user, body):
    assert_error(post_raw(api, body), 400, "invalid_json")


def test_an_unknown_field_is_a_422_with_details(api, user):
    error = assert_error(
        post_raw(api, json.dumps({"name": "x", "scope": ["read"]})), 422, "validation_error"
    )

    assert error["details"] == {"scope": ["Unknown field."]}
    assert ApiKey.objects.filter(user=user).count() == 1


@pytest.mark.parametrize(
    "body",
    [
        {"name": ["x"]},
        {"name": {"a": 1}},
        {"name": None},
        {"name": "x" * 101},
        {"name": "x", "scopes": "read"},
        {"name": "x", "scopes": [1]},
    ],
)
def test_wrong_types_are_a_422_with_details_per_field(api, user, body):
    error = assert_error(post_raw(api, json.dumps(body)), 422, "validation_error")

    assert set(error["details"]) <= {"name", "scopes"}
    assert error["details"]
    assert ApiKey.objects.filter(user=user).count() == 1


def test_a_form_body_is_an_unsupported_media_type(api):
    assert_error(
        post_raw(api, "name=x", "application/x-www-form-urlencoded"), 415, "unsupported_media_type"
    )


def test_a_body_over_one_mib_is_a_413_and_creates_nothing(api, user):
    body = json.dumps({"name": "x", "padding": "y" * MIB})

    error = assert_error(post_raw(api, body), 413, "request_too_large")

    assert "1048576 bytes" in error["message"]
    assert ApiKey.objects.filter(user=user).count() == 1


def test_a_body_of_exactly_one_mib_is_read(api, user):
    body = json.dumps({"name": "x", "padding": ""})
    body = body.replace('""', '"' + "y" * (MIB - len(body)) + '"')
    assert len(body) == MIB

    assert_error(post_raw(api, body), 422, "validation_error")  # the unknown field


def test_an_unknown_route_is_a_json_404_for_every_method(api, anon, db):
    for client in (api, anon):
        for method in ("get", "post", "put", "patch", "delete", "options"):
            response = getattr(client, method)("/api/v1/no/such/thing")

            assert_error(response, 404, "not_found")


def test_a_trailing_slash_is_a_json_404_not_a_redirect(api):
    assert_error(api.get("/api/v1/account/"), 404, "not_found")


def test_a_wrong_method_is_a_json_405_with_allow(api):
    for method, path in [("put", "/api/v1/account"), ("delete", "/api/v1/api-keys"),
                         ("post", "/api/v1/health"), ("patch", "/api/v1/health")]:  # fmt: skip
        response = getattr(api, method)(path)

        assert_error(response, 405, "method_not_allowed")
        assert "GET" in response["Allow"]


def test_a_missing_scope_is_a_403(user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION="Bearer "
        + services.create_api_key(user=user, name="r", scopes=["read"])[1]
    )

    assert_error(
        client.delete("/api/v1/api-keys/" + str(ApiKey.objects.get().pk)), 403, "forbidden"
    )


def test_errors_of_the_schema_view_are_json_too(settings, anon, db):
    settings.API_ANON_RATE_LIMIT = 1
    anon.get("/api/v1/schema")

    error = assert_error(anon.get("/api/v1/schema"), 429, "rate_limited")

    assert error["retry_after"] >= 1


def test_an_error_page_from_outside_drf_is_turned_into_the_error_shape(api, settings):
    settings.ALLOWED_HOSTS = ["example.org"]  # Django itself answers 400 (DisallowedHost)

    assert_error(api.get("/api/v1/account"), 400, "invalid_request")


def test_a_live_server_refuses_a_declared_length_over_one_mib_without_reading_it(live, user):
    raw = services.create_api_key(user=user, name="t")[1]
    body = json.dumps({"name": "big", "padding": "y" * MIB}).encode()

    with live.client(raw) as client:
        response = client.post(
            "/api-keys", content=body, headers={"Content-Type": "application/json"}
        )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert ApiKey.objects.filter(user=user).count() == 1


def test_a_live_server_refuses_a_chunked_body_over_one_mib(live, user):
    raw = services.create_api_key(user=user, name="t")[1]

    def chunks():  # no Content-Length: sent chunked, 1 MiB + 30 bytes in all
        yield b'{"name": "big", "padding": "'
        for _ in range(16):
            yield b"y" * 65536
        yield b'"}'

    with live.client(raw) as client:
        response = client.post(
            "/api-keys", content=chunks(), headers={"Content-Type": "application/json"}
        )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert ApiKey.objects.filter(user=user).count() == 1


def test_a_live_server_reads_a_small_chunked_body(live, user):
    raw = services.create_api_key(user=user, name="t", scopes=["read", "write", "keys"])[1]

    def chunks():
        yield b'{"name": '
        yield b'"chunked"}'

    with live.client(raw) as client:
        response = client.post(
            "/api-keys", content=chunks(), headers={"Content-Type": "application/json"}
        )

    assert response.status_code == 201
    assert ApiKey.objects.filter(user=user, name="chunked").exists()


def test_a_live_server_answers_unknown_routes_with_json(live):
    with live.client() as client:
        response = client.get("/nothing/here")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": {"message": "Not found", "code": "not_found"}}


def test_djangos_own_refusal_of_a_large_body_is_the_same_413():
    """Django refuses a body past DATA_UPLOAD_MAX_MEMORY_SIZE where a view reads it whole
    (a form, request.body): the answer is the body guard's 413, not a 400."""
    from django.core.exceptions import RequestDataTooBig

    from portal.api.errors import exception_handler

    response = exception_handler(RequestDataTooBig("Request body exceeded the limit"), {})

    assert response.status_code == 413
    assert response.data["error"]["code"] == "request_too_large"
