"""The public pages: landing and quickstart."""

import re

import pytest
from django.conf import settings
from django.urls import reverse
from django.views.defaults import server_error


@pytest.mark.django_db
def test_the_landing_page_shows_both_paths(client):
    html = client.get(reverse("landing")).content.decode()

    assert "Use compute" in html
    assert "Provide compute" in html
    assert reverse("signup") in html


@pytest.mark.django_db
def test_quickstart_points_clients_at_this_coordinator(client):
    html = client.get(reverse("quickstart")).content.decode()

    assert f'base_url="{settings.PUBLIC_URL}/api/v1"' in html
    assert "island chat" in html
    assert "island agent" in html
    assert 'href="/pair"' in html


@pytest.mark.django_db
def test_every_page_names_the_sites_icon_and_it_is_served(client):
    html = client.get(reverse("landing")).content.decode()
    href = re.search(r'<link rel="icon" href="([^"]+)"', html)[1]
    response = client.get(href)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"


def test_favicon_ico_is_served_at_the_root_for_pages_that_name_no_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    assert b"".join(response.streaming_content).startswith(b"\x00\x00\x01\x00")  # an ICO


@pytest.mark.django_db
def test_an_unknown_page_answers_the_sites_404_page_without_the_url_patterns(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Page not found" in html
    assert "/no-such-page" in html
    assert 'class="site-header"' in html  # the site's look, with its navigation
    assert "URLconf" not in html
    assert "admin/" not in html


def test_the_500_page_has_the_sites_look_and_needs_no_request_context(rf):
    response = server_error(rf.get("/"))
    assert response.status_code == 500
    html = response.content.decode()
    assert "Something went wrong" in html
    assert 'class="site-header"' in html
