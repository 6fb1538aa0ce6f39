"""The shapes of the ledger API's answers, for the OpenAPI document only (the views write
them with billing.api's ``present_*`` functions; tests/portal/test_api_schema_answers.py
checks real answers against these). Amounts are decimal strings."""

from rest_framework import serializers

from billing.models import LedgerEntry
from portal.api.serializers import PageMeta, envelope


class Amount(serializers.CharField):
    """A number of credits, written as a decimal string ("0.010000")."""


class LedgerEntryOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=LedgerEntry.Kind.choices)
    amount = Amount()
    job_id = serializers.UUIDField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    available_after = Amount()
    held_after = Amount()
    created_at = serializers.DateTimeField()


LedgerResponse = envelope("LedgerResponse", LedgerEntryOut(many=True), meta=PageMeta())
