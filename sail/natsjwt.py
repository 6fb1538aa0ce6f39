"""NATS JWTs (nats-io/jwt v2), as much of them as the auth callout needs: read the
server's authorization request, write the user it admits and the signed answer.

A JWT here is ``header.claims.signature`` in unpadded URL-safe base64, signed with an
nkey (ed25519). The one Python library for NATS JWTs does not cover the callout's
request and answer claims, so this small encoder signs with ``nkeys`` and the tests hold
it against a real nats-server.
"""

import base64
import binascii
import hashlib
import json
import time
from typing import Any

from sail import keys

HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
REQUEST_AUDIENCE = "nats-authorization-request"
# nats-io/jwt hashes these claims (ClaimsData), in this order, for the token's id.
_HASHED = ("aud", "exp", "iat", "iss", "name", "nbf", "sub")
NO_LIMIT = -1


class InvalidToken(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(value: Any) -> str:
    """As Go's encoding/json writes it: compact, with <, > and & escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _jti(claims: dict[str, Any]) -> str:
    hashed = {k: claims[k] for k in _HASHED if claims.get(k) not in (None, "", 0)}
    digest = hashlib.new("sha512_256", _json(hashed).encode()).digest()
    return base64.b32encode(digest).decode().rstrip("=")


def encode(claims: dict[str, Any], issuer_seed: str) -> str:
    """Sign ``claims`` with the issuer's seed (``iss``, ``iat`` and ``jti`` are set here)."""
    claims = {**claims, "iss": keys.public_key(issuer_seed), "iat": int(time.time())}
    claims.pop("jti", None)
    claims["jti"] = _jti(claims)
    signed = f"{_b64(_json(HEADER).encode())}.{_b64(_json(claims).encode())}"
    return f"{signed}.{_b64(keys.sign(issuer_seed, signed.encode()))}"


def decode(token: str) -> dict[str, Any]:
    """The claims of a token signed by the key its ``iss`` names; InvalidToken else."""
    try:
        header_part, claims_part, signature = token.split(".")
        header = json.loads(_unb64(header_part))
        claims = json.loads(_unb64(claims_part))
        raw_signature = _unb64(signature)
    except (ValueError, binascii.Error) as exc:
        raise InvalidToken(f"malformed token: {exc}") from exc
    if not isinstance(header, dict) or str(header.get("typ", "")).upper() != "JWT":
        raise InvalidToken("not a JWT")
    if not isinstance(claims, dict) or not isinstance(claims.get("iss"), str):
        raise InvalidToken("no issuer")
    if not keys.verify(claims["iss"], f"{header_part}.{claims_part}".encode(), raw_signature):
        raise InvalidToken("bad signature")
    return claims


def authorization_request(token: str) -> dict[str, Any]:
    """The ``nats`` part of a server's authorization request, checked: signed by the
    server it names, meant for the callout, not expired."""
    claims = decode(token)
    request = claims.get("nats")
    if claims.get("aud") != REQUEST_AUDIENCE or not isinstance(request, dict):
        raise InvalidToken("not an authorization request")
    server = request.get("server_id")
    if not isinstance(server, dict) or claims["iss"] != server.get("id"):
        raise InvalidToken("not signed by the server that sent it")
    if claims.get("exp", 0) < time.time():
        raise InvalidToken("expired")
    return request


def user(
    *,
    user_key: str,
    account: str,
    name: str,
    publish: list[str],
    subscribe: list[str],
    ttl_seconds: int,
    issuer_seed: str,
) -> str:
    """The user a callout admits: its account, its allowed subjects, its expiry (the
    server disconnects it then, and it must authenticate again)."""
    permissions = {
        "pub": {"allow": publish},
        "sub": {"allow": subscribe},
        "subs": NO_LIMIT,
        "data": NO_LIMIT,
        "payload": NO_LIMIT,
        "type": "user",
        "version": 2,
    }
    claims = {
        "aud": account,
        "sub": user_key,
        "name": name,
        "exp": int(time.time()) + ttl_seconds,
        "nats": permissions,
    }
    return encode(claims, issuer_seed)


def response(
    *, user_key: str, server_id: str, issuer_seed: str, jwt: str = "", error: str = ""
) -> str:
    """The callout's answer to one request: the admitted user, or an error."""
    answer = {"type": "authorization_response", "version": 2}
    answer |= {"error": error} if error else {"jwt": jwt}
    return encode({"aud": server_id, "sub": user_key, "nats": answer}, issuer_seed)
