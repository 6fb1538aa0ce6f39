from portal import services


def test_a_key_revoked_by_another_process_is_refused_at_once(live):
    """GIVEN a server process that has the key cached WHEN this process revokes it
    THEN the server's very next request with the key is refused."""
    user = services.sign_up(email="revoker@example.com", password=None)
    key, raw = services.create_api_key(user=user, name="shared")
    with live.client(raw) as client:
        assert client.get("/account").status_code == 200
        services.revoke_api_key(key=key)
        response = client.get("/account")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
