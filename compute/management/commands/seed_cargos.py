from django.core.management.base import BaseCommand

from compute.seed import seed_cargos


class Command(BaseCommand):
    help = "Create or update the seed Cargo catalog (idempotent)."

    def handle(self, *args, **options) -> None:
        created, updated = seed_cargos()
        self.stdout.write(f"Cargos: {created} created, {updated} updated")
