"""What the accounts announce for the apps built on them (connected in their apps.py)."""

from django.dispatch import Signal

# Sent inside the transaction that creates an account (``user``): what a new account gets
# (billing: its starting grant) commits with it or not at all.
account_created = Signal()
# Sent with ``user_id`` once sessions of that account ended (signed out, or everywhere
# else): the app with the websockets closes those of the ended sessions (pairing).
sessions_ended = Signal()
