"""Routes of the compute API under /api/v1 (hosts here; add Cargo and job routes below)."""

from django.urls import path

from compute import api, batches_api, jobs_api, openai_api, streaming
from portal.api.lane import fast

urlpatterns = [
    path("hosts", api.HostListView.as_view(), name="api-hosts"),
    path("hosts/<uuid:host_id>", api.HostDetailView.as_view(), name="api-host"),
    path("hosts/<uuid:host_id>/karma", api.HostKarmaView.as_view(), name="api-host-karma"),
    path(
        "hosts/<uuid:host_id>/karma/history",
        api.HostKarmaHistoryView.as_view(),
        name="api-host-karma-history",
    ),
    path("cargos", jobs_api.CargoListView.as_view(), name="api-cargos"),
    path("workloads", jobs_api.WorkloadListView.as_view(), name="api-workloads"),
    path("workloads/<slug:slug>", jobs_api.WorkloadDetailView.as_view(), name="api-workload"),
    path("jobs", fast(jobs_api.JobListView.as_view(), POST=jobs_api.submit_fast), name="api-jobs"),
    path("jobs/batch", batches_api.BatchView.as_view(), name="api-job-batch"),
    path("jobs/<uuid:job_id>", jobs_api.JobDetailView.as_view(), name="api-job"),
    path(
        "jobs/<uuid:job_id>/batch-status",
        batches_api.BatchStatusView.as_view(),
        name="api-job-batch-status",
    ),
    path("jobs/<uuid:job_id>/output", jobs_api.JobOutputView.as_view(), name="api-job-output"),
    path(
        "jobs/<uuid:job_id>/stream",
        fast(streaming.job_stream, GET=streaming.job_stream_fast),
        name="api-job-stream",
    ),
    path(
        "chat/completions",
        fast(openai_api.chat_completions, POST=openai_api.complete_fast),
        name="api-chat-completions",
    ),
]
