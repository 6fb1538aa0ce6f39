def test_health_answers_ok_without_authentication(anon):
    response = anon.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["version"]
