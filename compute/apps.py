from django.apps import AppConfig


class ComputeConfig(AppConfig):
    name = "compute"

    def ready(self) -> None:
        # Here, not at the top: these import models, which need the app registry (Django's
        # loading order). What the job path announces (compute.signals) is acted upon by
        # the modules built on it; they are looked up at each call (tests replace them).
        from compute import signals, tasks  # (see above)
        from compute.services import dispatch  # (see above)

        signals.slot_freed.connect(lambda **_: dispatch.dispatch_if_waiting(), weak=False)
        signals.pass_wanted.connect(lambda **_: tasks.dispatch_queued_task.delay(), weak=False)
        # A job's end may end its batch, or let the batch's next job go.
        from compute.services import batches  # (see above)
        from compute.services.lifecycle import job_finished  # (see above)

        job_finished.connect(batches.on_job_finished, dispatch_uid="compute.batches")
