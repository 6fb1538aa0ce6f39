# Every earlier migration of this app in one (they are listed in `replaces`). A database
# that has applied all of them takes this one as applied; a new one is built from it.

import django.db.models.deletion
import django.utils.timezone
import uuid
from decimal import Decimal
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    replaces = [
        ('compute', '0001_initial'),
        ('compute', '0002_job_placement_output_fields'),
        ('compute', '0003_island_pending_seconds'),
        ('compute', '0004_job_queued_by_cargo'),
        ('compute', '0005_job_queue_reason_and_deadline'),
        ('compute', '0006_island_nkey'),
        ('compute', '0007_job_api_key'),
        ('compute', '0008_job_result_and_metered'),
        ('compute', '0009_job_batches_and_token_chunks'),
        ('compute', '0010_market_from_billing'),
    ]

    dependencies = [
        ('portal', '0001_squashed_0004_audit_log'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Cargo',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('slug', models.SlugField(max_length=100, unique=True)),
                ('name', models.CharField(max_length=200)),
                ('description', models.TextField(blank=True)),
                ('category', models.CharField(choices=[('llm', 'Llm'), ('image', 'Image'), ('audio', 'Audio'), ('vision', 'Vision'), ('text', 'Text'), ('utility', 'Utility')], max_length=16)),
                ('runtime_type', models.CharField(choices=[('container', 'Container'), ('wasm', 'Wasm'), ('onnx', 'Onnx'), ('llmcpp', 'Llmcpp'), ('diffusers', 'Diffusers'), ('coreml', 'Coreml')], max_length=16)),
                ('onnx_task_type', models.CharField(blank=True, max_length=50, null=True)),
                ('price_per_job', models.DecimalField(decimal_places=6, max_digits=20)),
                ('required_vram_mb', models.PositiveIntegerField(default=0)),
                ('required_ram_mb', models.PositiveIntegerField(default=0)),
                ('time_limit_seconds', models.PositiveIntegerField(default=300)),
                ('input_schema', models.JSONField(blank=True, null=True)),
                ('spec', models.JSONField(blank=True, default=dict)),
                ('is_enabled', models.BooleanField(default=True)),
                ('is_approved', models.BooleanField(default=True)),
            ],
            options={
                'ordering': ['slug'],
            },
        ),
        migrations.CreateModel(
            name='Island',
            fields=[
                ('id', models.UUIDField(primary_key=True, serialize=False)),
                ('name', models.CharField(blank=True, max_length=100)),
                ('platform', models.CharField(choices=[('desktop', 'Desktop'), ('ios', 'Ios'), ('android', 'Android')], default='desktop', max_length=16)),
                ('status', models.CharField(choices=[('online', 'Online'), ('offline', 'Offline')], default='offline', max_length=16)),
                ('region', models.CharField(blank=True, max_length=50)),
                ('agent_version', models.CharField(blank=True, max_length=50)),
                ('capabilities', models.JSONField(blank=True, default=dict)),
                ('runtimes', models.JSONField(blank=True, default=list)),
                ('metrics', models.JSONField(blank=True, default=dict)),
                ('warm_workloads', models.JSONField(blank=True, default=list)),
                ('asking_prices', models.JSONField(blank=True, default=dict)),
                ('active_jobs', models.PositiveIntegerField(default=0)),
                ('max_concurrent_jobs', models.PositiveIntegerField(default=1)),
                ('karma', models.IntegerField(default=0)),
                ('pending_minutes', models.PositiveIntegerField(default=0)),
                ('pending_seconds', models.PositiveSmallIntegerField(default=0)),
                ('jobs_completed', models.PositiveIntegerField(default=0)),
                ('jobs_failed', models.PositiveIntegerField(default=0)),
                ('earnings', models.DecimalField(decimal_places=6, default=Decimal('0'), max_digits=20)),
                ('suspended', models.BooleanField(default=False)),
                ('cooldown_until', models.DateTimeField(blank=True, null=True)),
                ('registered_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('paired_at', models.DateTimeField(blank=True, null=True)),
                ('last_heartbeat_at', models.DateTimeField(blank=True, db_index=True, null=True)),
                ('went_offline_at', models.DateTimeField(blank=True, null=True)),
                ('offline_graceful', models.BooleanField(default=False)),
                ('disconnect_penalized', models.BooleanField(default=False)),
                ('nkey', models.CharField(blank=True, max_length=56, null=True, unique=True)),
                ('token_hash', models.CharField(blank=True, max_length=64)),
                ('token_expires_at', models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            name='Job',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('status', models.CharField(choices=[('pending', 'Pending'), ('queued', 'Queued'), ('running', 'Running'), ('completed', 'Completed'), ('failed', 'Failed'), ('cancelled', 'Cancelled'), ('timeout', 'Timeout')], default='pending', max_length=16)),
                ('priority', models.PositiveSmallIntegerField(default=0)),
                ('input', models.JSONField(default=dict)),
                ('output', models.TextField(blank=True)),
                ('error', models.TextField(blank=True)),
                ('last_seq', models.PositiveIntegerField(default=0)),
                ('token_chunks', models.PositiveIntegerField(default=0)),
                ('prompt_tokens', models.PositiveIntegerField(blank=True, null=True)),
                ('completion_tokens', models.PositiveIntegerField(blank=True, null=True)),
                ('budget', models.DecimalField(blank=True, decimal_places=6, max_digits=20, null=True)),
                ('price', models.DecimalField(blank=True, decimal_places=6, max_digits=20, null=True)),
                ('credits_used', models.DecimalField(blank=True, decimal_places=6, max_digits=20, null=True)),
                ('attempts', models.PositiveSmallIntegerField(default=0)),
                ('excluded_islands', models.JSONField(blank=True, default=list)),
                ('lease_expires_at', models.DateTimeField(blank=True, null=True)),
                ('idempotency_key', models.CharField(blank=True, max_length=200, null=True)),
                ('created_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ('assigned_at', models.DateTimeField(blank=True, null=True)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('completed_at', models.DateTimeField(blank=True, null=True)),
                ('region', models.CharField(blank=True, max_length=50)),
                ('pending_chunks', models.JSONField(blank=True, default=dict)),
                ('images', models.JSONField(blank=True, default=list)),
                ('result', models.JSONField(blank=True, null=True)),
                ('metered', models.JSONField(blank=True, default=dict)),
                ('deadline_at', models.DateTimeField(blank=True, null=True)),
                ('queue_reason', models.CharField(blank=True, choices=[('no_island', 'no online Island can run this Cargo'), ('over_budget', 'the Islands that can run this Cargo ask more than its budget'), ('busy', 'all the Islands that can run this Cargo are busy')], max_length=16)),
                ('queue_timeout_seconds', models.PositiveIntegerField(blank=True, null=True)),
                ('queue_deadline_at', models.DateTimeField(blank=True, null=True)),
                ('batch', models.JSONField(blank=True, null=True)),
                ('batch_index', models.PositiveSmallIntegerField(blank=True, null=True)),
            ],
            options={
                'ordering': ['-created_at'],
            },
        ),
        migrations.CreateModel(
            name='KarmaEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('delta', models.IntegerField()),
                ('minutes', models.IntegerField(default=0)),
                ('reason', models.CharField(max_length=32)),
                ('job_id', models.UUIDField(blank=True, null=True)),
                ('karma_after', models.IntegerField()),
                ('pending_minutes_after', models.PositiveIntegerField()),
                ('created_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
            ],
            options={
                'ordering': ['-created_at', '-id'],
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
            ],
            options={
                'db_table': 'billing_ratesnapshot',
                'ordering': ['-created_at'],
            },
        ),
        migrations.CreateModel(
            name='SavedBid',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('bid', models.DecimalField(decimal_places=6, max_digits=20)),
                ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                'db_table': 'billing_savedbid',
            },
        ),
        migrations.CreateModel(
            name='AskingPrice',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('price', models.DecimalField(decimal_places=6, max_digits=20)),
                ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('cargo', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='asks', to='compute.cargo')),
            ],
            options={
                'db_table': 'billing_askingprice',
            },
        ),
        migrations.AddField(
            model_name='island',
            name='owner',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='islands', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='askingprice',
            name='island',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='asks', to='compute.island'),
        ),
        migrations.AddField(
            model_name='job',
            name='api_key',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='portal.apikey'),
        ),
        migrations.AddField(
            model_name='job',
            name='cargo',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='jobs', to='compute.cargo'),
        ),
        migrations.AddField(
            model_name='job',
            name='island',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='jobs', to='compute.island'),
        ),
        migrations.AddField(
            model_name='job',
            name='parent',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='children', to='compute.job'),
        ),
        migrations.AddField(
            model_name='job',
            name='user',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='jobs', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='karmaevent',
            name='island',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='karma_events', to='compute.island'),
        ),
        migrations.AddField(
            model_name='ratesnapshot',
            name='cargo',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='rates', to='compute.cargo'),
        ),
        migrations.AddField(
            model_name='savedbid',
            name='cargo',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='bids', to='compute.cargo'),
        ),
        migrations.AddField(
            model_name='savedbid',
            name='user',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='bids', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddIndex(
            model_name='island',
            index=models.Index(fields=['status', 'suspended'], name='compute_isl_status_1041fa_idx'),
        ),
        migrations.AddConstraint(
            model_name='askingprice',
            constraint=models.UniqueConstraint(fields=('island', 'cargo'), name='one_ask_per_island_cargo'),
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(fields=['status', '-priority', 'created_at'], name='compute_job_status_b03813_idx'),
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(fields=['island', 'status'], name='job_island_status'),
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(fields=['user', 'status'], name='job_user_status'),
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(condition=models.Q(('api_key__isnull', False)), fields=['api_key', 'created_at'], name='job_api_key_created'),
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(condition=models.Q(('status', 'queued')), fields=['cargo', '-priority'], name='job_queued_by_cargo'),
        ),
        migrations.AddConstraint(
            model_name='job',
            constraint=models.UniqueConstraint(fields=('user', 'idempotency_key'), name='unique_job_idempotency_key'),
        ),
        migrations.AddConstraint(
            model_name='job',
            constraint=models.UniqueConstraint(fields=('parent', 'batch_index'), name='unique_batch_index'),
        ),
        migrations.AddIndex(
            model_name='ratesnapshot',
            index=models.Index(fields=['cargo', '-created_at'], name='billing_rat_cargo_i_753852_idx'),
        ),
        migrations.AddConstraint(
            model_name='savedbid',
            constraint=models.UniqueConstraint(fields=('user', 'cargo'), name='one_bid_per_cargo'),
        ),
    ]
