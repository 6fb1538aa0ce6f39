"""What the job path announces for what is built on it to act upon (connected in
compute.apps): a module never imports the modules that import it, so the dispatch pass,
which moves jobs, learns of a job's end from here, and asks a worker for a pass from here.
"""

from django.dispatch import Signal

# After the commit of a job's end on an Island: a slot is free there, a queued job may
# take it (compute.services.dispatch.dispatch_if_waiting).
slot_freed = Signal()

# A dispatch pass is wanted soon: a worker runs it (compute.tasks).
pass_wanted = Signal()
