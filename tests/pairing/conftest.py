"""Fixtures of the pairing tests."""

import uuid

import pytest
from django.test import Client

from compute.models import Island
from pairing import services
from sail import keys


@pytest.fixture
def island(db) -> Island:
    """An unpaired desktop Island with its own key that asked for a code (with
    real-looking capabilities)."""
    return Island.objects.create(
        id=uuid.uuid4(),
        nkey=keys.public_key(keys.new_seed()),
        name="workstation",
        region="eu-west",
        agent_version="0.4.2",
        capabilities={
            "gpu_model": "RTX 4090",
            "gpu_vram_mb": 24576,
            "cpu_cores": 16,
            "ram_mb": 65536,
        },
        runtimes=["container", "llmcpp"],
    )


@pytest.fixture
def code(island) -> str:
    """The live pairing code ``island`` received over NATS."""
    return services.request_pairing_code(str(island.pk), key=island.nkey)["code"]


@pytest.fixture
def browser_client(user) -> Client:
    """A Django test client signed in as ``user``."""
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def other_client(other_user) -> Client:
    """A Django test client signed in as ``other_user``."""
    client = Client()
    client.force_login(other_user)
    return client
