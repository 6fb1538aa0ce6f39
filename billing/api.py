"""Account and ledger endpoints of the public API."""

import uuid
from decimal import Decimal
from functools import cache

from django.db import connection
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import api_schema as out
from billing import selectors
from billing.models import Balance, LedgerEntry
from portal.api.base import SignedRequest, page_schema, paginate
from portal.api.serializers import AccountResponse, AccountSerializer


@cache
def _balance_sql() -> str:
    """The ORM's SQL for one account's balance, built once per process: building it took
    the ORM about four times as long as the database took to answer it (bench/README.md)."""
    query = Balance.objects.filter(pk=uuid.UUID(int=0)).values_list(*BALANCE_FIELDS)[:1]
    return query.query.sql_with_params()[0]


def _balance_row(user) -> tuple[Decimal, ...]:
    with connection.cursor() as cursor:
        # The field converts the UUID for the backend (SQLite stores it as hex text).
        user_id = Balance._meta.pk.get_db_prep_value(user.pk, connection)
        cursor.execute(_balance_sql(), [user_id])
        return cursor.fetchone() or (Decimal(0),) * len(BALANCE_FIELDS)


BALANCE_FIELDS = ("available", "held", "earnings")
_account_serializer = AccountSerializer()  # fields built once; to_representation keeps no state


class AccountView(APIView):
    """The API's hottest read (every client's balance check): the balance is read fresh
    on every request, with a query compiled once and a serializer built once."""

    @extend_schema(summary="Your account and available credits", responses=AccountResponse)
    def get(self, request: SignedRequest) -> Response:
        user = request.user
        available, held, earnings = _balance_row(user)
        account = {
            "id": user.pk,
            "email": user.email,
            "credits": available,
            "held": held,
            "earnings": earnings,
            "created_at": user.date_joined,
        }
        return Response({"data": _account_serializer.to_representation(account)})


def present_entry(entry: LedgerEntry) -> dict:
    return {
        "id": entry.pk,
        "kind": entry.kind,
        "amount": str(entry.amount),
        "job_id": str(entry.job_id) if entry.job_id else None,
        "reason": entry.reason,
        "available_after": str(entry.available_after),
        "held_after": str(entry.held_after),
        "created_at": entry.created_at,
    }


class LedgerView(APIView):
    @page_schema("Your ledger entries, newest first", out.LedgerResponse)
    def get(self, request: SignedRequest) -> Response:
        return Response(
            paginate(request, selectors.ledger_entries(user=request.user), present_entry)
        )
