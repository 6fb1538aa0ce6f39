"""Pairing on the Sail, for the bridge (sail.bridge finds this module, as every app's
``handlers``): the answer to a pairing request, and the auth callout that admits Islands
by their pairing identities (pairing.callout)."""

import logging
from typing import Any

from pairing import callout, services
from sail.registry import answers
from sail.schemas import Invalid, PairingRequest, decode, host_uuid, to_builtins

logger = logging.getLogger(__name__)
answers("callout")(callout.run_callout)


@answers("pairing")
def pairing_reply(data: bytes, key: str | None = None) -> dict[str, Any]:
    """The reply body of a pairing request (blocking: call it off the loop); ``key``: the
    requester's public key (``coordinator.hosts.pairing.{key}``), None for the field
    user's requests (``coordinator.hosts.pairing``)."""
    try:
        request = decode(data, PairingRequest)
        host_id = host_uuid(request.host_id)
    except Invalid as exc:
        return {"success": False, "error": f"invalid pairing request: {exc}"}
    registration = None
    if key is not None and request.capabilities is not None:
        registration = {
            "capabilities": to_builtins(request.capabilities),
            "region": request.capabilities.region,
            "agent_version": request.version,
            "name": request.name,
        }
    try:
        return services.request_pairing_code(host_id, key=key, registration=registration)
    except Exception:
        logger.exception("pairing request of %s failed", host_id)
        return {"success": False, "error": "pairing is unavailable right now, try again later"}
