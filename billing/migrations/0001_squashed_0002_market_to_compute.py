# Every earlier migration of this app in one (they are listed in `replaces`). A database
# that has applied all of them takes this one as applied; a new one is built from it.

import django.db.models.deletion
import django.utils.timezone
from decimal import Decimal
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    replaces = [
        ('billing', '0001_initial'),
        ('billing', '0002_market_to_compute'),
    ]

    dependencies = [
        ('portal', '0001_squashed_0004_audit_log'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Balance',
            fields=[
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='balance', serialize=False, to=settings.AUTH_USER_MODEL)),
                ('available', models.DecimalField(decimal_places=6, default=Decimal('0'), max_digits=20)),
                ('held', models.DecimalField(decimal_places=6, default=Decimal('0'), max_digits=20)),
                ('earnings', models.DecimalField(decimal_places=6, default=Decimal('0'), max_digits=20)),
            ],
            options={
                'constraints': [models.CheckConstraint(condition=models.Q(('available__gte', 0)), name='available_not_negative'), models.CheckConstraint(condition=models.Q(('held__gte', 0)), name='held_not_negative'), models.CheckConstraint(condition=models.Q(('earnings__gte', 0)), name='earnings_not_negative')],
            },
        ),
        migrations.CreateModel(
            name='LedgerEntry',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('grant', 'Grant'), ('hold', 'Hold'), ('capture', 'Capture'), ('release', 'Release'), ('earning', 'Earning'), ('fee', 'Fee'), ('adjustment', 'Adjustment')], max_length=16)),
                ('amount', models.DecimalField(decimal_places=6, max_digits=20)),
                ('job_id', models.UUIDField(blank=True, db_index=True, null=True)),
                ('idempotency_key', models.CharField(max_length=200, unique=True)),
                ('reason', models.CharField(blank=True, max_length=200)),
                ('available_after', models.DecimalField(decimal_places=6, max_digits=20)),
                ('held_after', models.DecimalField(decimal_places=6, max_digits=20)),
                ('earnings_after', models.DecimalField(decimal_places=6, default=Decimal('0'), max_digits=20)),
                ('created_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='ledger', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name_plural': 'ledger entries',
                'ordering': ['-created_at', '-id'],
            },
        ),
    ]
