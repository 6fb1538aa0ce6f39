"""JetStream acks sent by whoever made a message's data safe.

A JetStream ack is a publish of ``+ACK`` to the reply subject the server gave the
message, so a Celery worker can ack a message that the bridge fetched. Tasks call
:func:`ack` after their transaction committed: a crash anywhere before that (bridge,
broker, worker, database) leaves the message unacked and JetStream delivers it again
after the consumer's ``ack_wait``.
"""

import logging

from sail.client import sail

logger = logging.getLogger(__name__)
ACK = b"+ACK"


def ack(reply_subjects: list[str]) -> None:
    if not reply_subjects:
        return

    async def publish_all(nc) -> None:
        for subject in reply_subjects:
            await nc.publish(subject, ACK)
        await nc.flush()

    try:
        sail.call(publish_all)
    except Exception:
        # Not fatal: the data is stored, and a redelivery is harmless (idempotent).
        logger.exception(
            "could not ack %d messages; JetStream will redeliver them", len(reply_subjects)
        )
