# Every earlier migration of this app in one (they are listed in `replaces`). A database
# that has applied all of them takes this one as applied; a new one is built from it.

import django.db.models.deletion
import django.utils.timezone
import portal.models
import uuid
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    replaces = [
        ('portal', '0001_initial'),
        ('portal', '0002_api_key_limits_usage_audit'),
        ('portal', '0003_hashed_sessions'),
        ('portal', '0004_audit_log'),
    ]

    dependencies = [
        ('auth', '0012_alter_user_first_name_max_length'),
    ]

    operations = [
        migrations.CreateModel(
            name='User',
            fields=[
                ('password', models.CharField(max_length=128, verbose_name='password')),
                ('last_login', models.DateTimeField(blank=True, null=True, verbose_name='last login')),
                ('is_superuser', models.BooleanField(default=False, help_text='Designates that this user has all permissions without explicitly assigning them.', verbose_name='superuser status')),
                ('is_staff', models.BooleanField(default=False, help_text='Designates whether the user can log into this admin site.', verbose_name='staff status')),
                ('is_active', models.BooleanField(default=True, help_text='Designates whether this user should be treated as active. Unselect this instead of deleting accounts.', verbose_name='active')),
                ('date_joined', models.DateTimeField(default=django.utils.timezone.now, verbose_name='date joined')),
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('email', models.EmailField(max_length=254, unique=True)),
                ('display_name', models.CharField(blank=True, max_length=100)),
                ('groups', models.ManyToManyField(blank=True, help_text='The groups this user belongs to. A user will get all permissions granted to each of their groups.', related_name='user_set', related_query_name='user', to='auth.group', verbose_name='groups')),
                ('user_permissions', models.ManyToManyField(blank=True, help_text='Specific permissions for this user.', related_name='user_set', related_query_name='user', to='auth.permission', verbose_name='user permissions')),
            ],
            options={
                'verbose_name': 'user',
                'verbose_name_plural': 'users',
                'abstract': False,
            },
            managers=[
                ('objects', portal.models.UserManager()),
            ],
        ),
        migrations.CreateModel(
            name='ApiKey',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=100)),
                ('prefix', models.CharField(max_length=8)),
                ('key_hash', models.CharField(max_length=64, unique=True)),
                ('scopes', models.JSONField(default=list)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('last_used_at', models.DateTimeField(blank=True, null=True)),
                ('expires_at', models.DateTimeField(blank=True, null=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('spend_cap_day', models.DecimalField(blank=True, decimal_places=6, max_digits=20, null=True)),
                ('spend_cap_month', models.DecimalField(blank=True, decimal_places=6, max_digits=20, null=True)),
                ('spend_cap_total', models.DecimalField(blank=True, decimal_places=6, max_digits=20, null=True)),
                ('jobs_per_minute', models.PositiveIntegerField(blank=True, null=True)),
                ('allowed_cargos', models.JSONField(blank=True, default=list)),
                ('allowed_ips', models.JSONField(blank=True, default=list)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_keys', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-created_at'],
            },
        ),
        migrations.CreateModel(
            name='MagicLink',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('token_hash', models.CharField(max_length=64, unique=True)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('expires_at', models.DateTimeField()),
                ('used_at', models.DateTimeField(blank=True, null=True)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='magic_links', to=settings.AUTH_USER_MODEL)),
            ],
        ),
        migrations.CreateModel(
            name='Session',
            fields=[
                ('session_data', models.TextField(verbose_name='session data')),
                ('expire_date', models.DateTimeField(db_index=True, verbose_name='expire date')),
                ('session_key', models.CharField(max_length=64, primary_key=True, serialize=False)),
                ('user', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='sessions', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'session',
                'verbose_name_plural': 'sessions',
                'abstract': False,
            },
        ),
        migrations.CreateModel(
            name='ApiKeyChange',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('at', models.DateTimeField(default=django.utils.timezone.now)),
                ('action', models.CharField(max_length=16)),
                ('changes', models.JSONField(default=dict)),
                ('by_session', models.CharField(blank=True, max_length=16)),
                ('ip', models.GenericIPAddressField(blank=True, null=True)),
                ('by_key', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='portal.apikey')),
                ('key', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='changes', to='portal.apikey')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-at', '-id'],
                'indexes': [models.Index(fields=['key', '-at'], name='key_change_key_at')],
            },
        ),
        migrations.CreateModel(
            name='ApiKeyDay',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('requests', models.BigIntegerField(default=0)),
                ('jobs', models.BigIntegerField(default=0)),
                ('tokens', models.BigIntegerField(default=0)),
                ('credits_spent', models.DecimalField(decimal_places=6, default=0, max_digits=20)),
                ('credits_held', models.DecimalField(decimal_places=6, default=0, max_digits=20)),
                ('key', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='days', to='portal.apikey')),
            ],
            options={
                'ordering': ['day'],
                'constraints': [models.UniqueConstraint(fields=('key', 'day'), name='unique_key_day')],
            },
        ),
        migrations.CreateModel(
            name='AuditEntry',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('at', models.DateTimeField(default=django.utils.timezone.now)),
                ('action', models.CharField(choices=[('signed_in', 'Signed In'), ('sign_in_failed', 'Sign In Failed'), ('signed_out', 'Signed Out'), ('key_created', 'API key created'), ('key_updated', 'API key edited'), ('key_revoked', 'API key revoked'), ('island_paired', 'Island Paired'), ('island_renamed', 'Island Renamed'), ('island_unpaired', 'Island Unpaired'), ('credentials_issued', 'Sail credentials issued'), ('credentials_revoked', 'Sail credentials revoked'), ('credits_granted', 'Credits Granted'), ('permissions_changed', 'Account flags changed')], max_length=32)),
                ('actor', models.CharField(choices=[('user', 'The account holder'), ('staff', 'Staff'), ('key', 'An API key'), ('system', 'The coordinator'), ('anonymous', 'Someone not signed in')], max_length=16)),
                ('ip', models.GenericIPAddressField(blank=True, null=True)),
                ('details', models.JSONField(blank=True, default=dict)),
                ('account', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='audit_entries', to=settings.AUTH_USER_MODEL)),
                ('by_key', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='portal.apikey')),
                ('by_user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name_plural': 'audit entries',
                'ordering': ['-at', '-id'],
                'indexes': [models.Index(fields=['account', '-at'], name='audit_account_at')],
            },
        ),
    ]
