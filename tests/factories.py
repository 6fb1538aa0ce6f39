"""factory-boy factories for the domain models."""

import uuid
from decimal import Decimal

import factory
from django.utils import timezone

from compute.models import Cargo, Island, Job
from portal.models import User
from sail import keys


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    password = factory.django.Password("correct horse battery")

    @factory.post_generation
    def credits(user, create, extracted, **kwargs):
        """``UserFactory(credits=100)``: an account granted that many credits (a ledger
        entry); without it the account has no balance row, hence nothing to spend."""
        if create and extracted is not None:
            from billing.services import grant

            grant(user=user, amount=Decimal(extracted), reason="Test grant",
                  idempotency_key=f"test-grant:{user.pk}")  # fmt: skip


class CargoFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Cargo
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"cargo-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())
    category = Cargo.Category.LLM
    runtime_type = Cargo.Runtime.CONTAINER
    price_per_job = Decimal("0.01")


class IslandFactory(factory.django.DjangoModelFactory):
    """An online, paired Island that serves container and llmcpp Cargos."""

    class Meta:
        model = Island

    id = factory.LazyFunction(uuid.uuid4)
    owner = factory.SubFactory(UserFactory)
    # Its own key, as the reference agent has (None: a field Island on the shared user).
    nkey = factory.LazyFunction(lambda: keys.public_key(keys.new_seed()))
    name = factory.Sequence(lambda n: f"island-{n}")
    status = Island.Status.ONLINE
    region = "eu-west"
    capabilities = factory.LazyFunction(
        lambda: {"cpu_cores": 8, "ram_mb": 16384, "gpu_model": "RTX 4090", "gpu_vram_mb": 24576}
    )
    runtimes = factory.LazyFunction(lambda: ["container", "llmcpp", "wasm"])
    last_heartbeat_at = factory.LazyFunction(timezone.now)
    paired_at = factory.LazyFunction(timezone.now)
    max_concurrent_jobs = 1


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    user = factory.SubFactory(UserFactory)
    cargo = factory.SubFactory(CargoFactory)
    input = factory.LazyFunction(lambda: {"prompt": "Hello!"})
