"""Island reports about jobs (status, output, progress, image, lease): parsed in the
bridge by :mod:`sail.job_events`, applied by the tasks of :mod:`compute.tasks`."""

from compute import tasks
from sail import job_events, subjects
from sail.registry import register, service, together

STREAM = subjects.JOB_EVENTS_STREAM
# A status may carry a Cargo's structured result (OCR: up to 1,000 lines with boxes).
register("status", stream=STREAM, task=tasks.ingest_job_status, max_bytes=262_144)(
    job_events.parse_status
)
register("output", stream=STREAM, task=tasks.ingest_job_output, max_bytes=300_000)(
    job_events.parse_output
)
register("progress", stream=STREAM, task=tasks.ingest_job_progress, max_bytes=4096)(
    job_events.parse_progress
)
register("image", stream=STREAM, task=tasks.ingest_job_images, max_bytes=16 * 1024 * 1024)(
    job_events.parse_image
)
register("lease", stream=STREAM, task=tasks.ingest_job_leases, max_bytes=4096)(
    job_events.parse_lease
)

# A batch holding several kinds goes to one task, which applies them in this order: a
# job's output before its ``succeeded`` (sent in that order by the Island), so that the
# job ends at once, with all its output stored, rather than waiting for another task.
together(
    STREAM,
    task=tasks.ingest_job_events,
    order=("output", "progress", "image", "lease", "status"),
)

# Tokens go to clients straight from the bridge (low latency); the durable path above
# stores them in the database in batches.
service(job_events.run_relay)
