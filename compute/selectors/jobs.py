"""Reads of jobs: a consumer only ever sees their own."""

import uuid

from django.db.models import QuerySet

from compute.models import Job
from portal.models import User


def jobs_of(user: User) -> QuerySet[Job]:
    return Job.objects.filter(user=user).select_related("cargo").order_by("-created_at", "-pk")


def job_of(user: User, job_id: uuid.UUID | str) -> Job | None:
    return jobs_of(user).filter(pk=job_id).first()
