"""The phone's side of mobile pairing: it has only the code from the QR code, so this
endpoint takes no API key; it is limited per IP, and wrong codes count against the
pairing limits (pairing/limits.py)."""

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from core.errors import error_body
from pairing import codes, mobile, services
from portal.api.auth import client_ip
from portal.api.base import InputSerializer, PublicView, validated
from portal.api.serializers import envelope
from portal.api.throttling import charge
from sail import keys


class ClaimThrottle(BaseThrottle):
    def allow_request(self, request: Request, view: object) -> bool:
        charge(request, f"pairing-claim:{client_ip(request)}", settings.PAIRING_CLAIMS_PER_IP)
        return True


class HardwareInput(InputSerializer):
    model = serializers.CharField(max_length=100, required=False)
    os_version = serializers.CharField(max_length=50, required=False)
    chip = serializers.CharField(max_length=100, required=False)
    cpu_cores = serializers.IntegerField(min_value=1, max_value=1024, required=False)
    ram_mb = serializers.IntegerField(min_value=1, max_value=16 * 1024 * 1024, required=False)
    gpu_model = serializers.CharField(max_length=100, required=False)
    gpu_vram_mb = serializers.IntegerField(min_value=0, max_value=16 * 1024 * 1024, required=False)
    neural_engine = serializers.BooleanField(required=False)


@extend_schema_field(
    {
        "type": "string",
        "pattern": f"^[A-Za-z0-9]{{{codes.MOBILE_LENGTH}}}$",
        "description": "The QR code's code (case and any spaces or dashes do not matter)",
    }
)
class QrCode(serializers.CharField):
    pass


@extend_schema_field(
    {
        "type": "string",
        "format": "nkey",
        "pattern": "^U[A-Z2-7]{55}$",
        "description": "A NATS user public key (an nkey): 'U' and 55 base32 characters "
        "that end with the key's checksum",
    }
)
class NatsKey(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if not keys.is_user_key(value):
            raise serializers.ValidationError("Not a NATS user public key (nkey).")
        return value


class ClaimInput(InputSerializer):
    code = QrCode(max_length=20)
    device_name = serializers.CharField(max_length=100)
    platform = serializers.ChoiceField(choices=sorted(mobile.MOBILE_RUNTIME))
    hardware = HardwareInput(required=False, default=dict)
    runtimes = serializers.ListField(
        child=serializers.RegexField(r"^[a-z0-9][a-z0-9_.-]{0,49}$"),
        max_length=20,
        required=False,
        default=list,
    )
    app_version = serializers.CharField(max_length=50, required=False, default="")
    nkey = NatsKey(
        required=False,
        help_text="The device's own NATS public key (an nkey, U…): it signs its NATS "
        "connections with the seed it keeps. Without one, the answer brings a new key's "
        "seed, made for the device and never stored.",
    )

    def validate_code(self, value: str) -> str:
        code = codes.normalize(value)
        if not codes.is_well_formed(code, codes.MOBILE_LENGTH):
            raise serializers.ValidationError(
                f"Expected the {codes.MOBILE_LENGTH}-character code of the QR code."
            )
        return code


def _error(error: services.PairingError) -> Response:
    if error.retry_after:
        body = error_body(error.message, error.code, retry_after=error.retry_after)
        return Response(body, status=error.status, headers={"Retry-After": str(error.retry_after)})
    return Response(error_body(error.message, error.code), status=error.status)


class Claimed(serializers.Serializer):
    """The phone's credentials (for the OpenAPI document)."""

    host_id = serializers.UUIDField()
    token = serializers.CharField(help_text="Shown once; stored hashed")
    token_expires_at = serializers.DateTimeField()
    account_email = serializers.EmailField()
    nats_url = serializers.CharField(allow_blank=True)
    nats_key = serializers.CharField(
        help_text="The public key the device's NATS connections sign with"
    )
    nats_seed = serializers.CharField(
        required=False,
        help_text="Only when the claim sent no key: the seed of the key made for the device. "
        "Shown once; the coordinator keeps only the public key",
    )
    runtime = serializers.ChoiceField(choices=sorted(mobile.MOBILE_RUNTIME.values()))


ClaimedResponse = envelope("ClaimedResponse", Claimed())


class MobileClaimView(PublicView):
    throttle_classes = [ClaimThrottle]

    @extend_schema(
        summary="Claim a mobile pairing code (the phone app; no API key)",
        request=ClaimInput,
        responses={201: ClaimedResponse},
    )
    def post(self, request: Request) -> Response:
        data = validated(ClaimInput, request.data)
        try:
            island, token, session, seed = mobile.claim_mobile_session(
                code=data["code"],
                nkey=data.get("nkey"),
                device_name=data["device_name"],
                platform=data["platform"],
                hardware=dict(data["hardware"]),
                runtimes=data["runtimes"],
                app_version=data["app_version"],
                ip=client_ip(request),
            )
        except services.PairingError as error:
            return _error(error)
        body = {
            "data": {
                "host_id": str(island.pk),
                "token": token,
                "token_expires_at": island.token_expires_at,
                "account_email": session.user.email,
                "nats_url": settings.NATS_PUBLIC_URL,
                "nats_key": island.nkey,
                **({"nats_seed": seed} if seed else {}),
                "runtime": island.runtimes[0],
            }
        }
        return Response(body, status=status.HTTP_201_CREATED)
