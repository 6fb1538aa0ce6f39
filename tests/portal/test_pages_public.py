"""The public pages: landing and quickstart."""

import pytest
from django.conf import settings
from django.urls import reverse


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
