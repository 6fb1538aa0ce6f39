# The compute exchange's models move to the compute app (compute 0010 takes them over):
# only Django's state changes here; their tables, constraints and index stay as they are.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name='AskingPrice'),
                migrations.DeleteModel(name='RateSnapshot'),
                migrations.DeleteModel(name='SavedBid'),
            ],
            database_operations=[],
        ),
    ]
