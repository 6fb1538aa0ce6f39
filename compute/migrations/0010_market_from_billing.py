# The compute exchange's models, from billing (billing 0002 lets them go): only Django's
# state changes; each keeps its table (db_table), constraints and index.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('compute', '0009_job_batches_and_token_chunks'),
        ('billing', '0002_market_to_compute'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='AskingPrice',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('price', models.DecimalField(decimal_places=6, max_digits=20)),
                        ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('cargo', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='asks', to='compute.cargo')),
                        ('island', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='asks', to='compute.island')),
                    ],
                    options={
                        'db_table': 'billing_askingprice',
                        'constraints': [models.UniqueConstraint(fields=('island', 'cargo'), name='one_ask_per_island_cargo')],
                    },
                ),
                migrations.CreateModel(
                    name='RateSnapshot',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('avg_price', models.DecimalField(decimal_places=6, max_digits=20)),
                        ('min_price', models.DecimalField(decimal_places=6, max_digits=20)),
                        ('max_price', models.DecimalField(decimal_places=6, max_digits=20)),
                        ('num_hosts', models.PositiveIntegerField()),
                        ('surge', models.BooleanField(default=False)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('cargo', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='rates', to='compute.cargo')),
                    ],
                    options={
                        'db_table': 'billing_ratesnapshot',
                        'ordering': ['-created_at'],
                        'indexes': [models.Index(fields=['cargo', '-created_at'], name='billing_rat_cargo_i_753852_idx')],
                    },
                ),
                migrations.CreateModel(
                    name='SavedBid',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('bid', models.DecimalField(decimal_places=6, max_digits=20)),
                        ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('cargo', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='bids', to='compute.cargo')),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='bids', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'billing_savedbid',
                        'constraints': [models.UniqueConstraint(fields=('user', 'cargo'), name='one_bid_per_cargo')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
