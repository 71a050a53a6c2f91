"""AWS protocol pieces for the Bedrock mock: event-stream frame encoding, SigV4 verification and
request validation against botocore's own service model (the `[bedrock]` extra, imported lazily).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import re
import struct
import zlib
from collections.abc import Mapping
from typing import Any

import orjson

# ---------------------------------------------------------------- event stream encoding
_STRING = 7  # header value type: utf-8 string with a 2-byte length


def encode_headers(headers: Mapping[str, str]) -> bytes:
    out = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        out += struct.pack(">B", len(n)) + n + struct.pack(">BH", _STRING, len(v)) + v
    return out


def encode_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """prelude (total length, headers length, CRC32 of both) + headers + payload + CRC32 of all before."""
    h = encode_headers(headers)
    total = 12 + len(h) + len(payload) + 4
    prelude = struct.pack(">II", total, len(h))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + h + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    # Bedrock pads payloads with a `p` field (to hide lengths); readers must ignore unknown fields
    body = orjson.dumps({**payload, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"[: 5 + len(event_type)]})
    return encode_frame({":event-type": event_type, ":content-type": "application/json",
                         ":message-type": "event"}, body)


def exception_frame(exception_type: str, message: str) -> bytes:
    return encode_frame({":exception-type": exception_type, ":content-type": "application/json",
                         ":message-type": "exception"}, orjson.dumps({"message": message}))


# ---------------------------------------------------------------- SigV4
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/"
                   r"(?P<service>[a-z0-9-]+)/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?"
                   r"Signature=(?P<sig>[0-9a-f]{64})")
_REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d")
MAX_SKEW = dt.timedelta(minutes=5)


class AuthFailure(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def expected_signature(method: str, url: str, headers: Mapping[str, str], body: bytes, access_key: str,
                       secret: str, region: str, service: str, amz_date: str) -> str:
    """What botocore computes for this request, signed at `amz_date` — the same code path as the client."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    token = headers.get("x-amz-security-token")
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    req.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret, token), service, region)
    return signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req)  # type: ignore[no-any-return]


def verify_sigv4(method: str, url: str, headers: Mapping[str, str], body: bytes, secret: str | None,
                 service: str = "bedrock", now: dt.datetime | None = None) -> dict[str, str]:
    """Check the Authorization header like AWS does; returns the parsed credential scope.

    With `secret` the signature itself is recomputed; without it only the form is checked.
    """
    auth = headers.get("Authorization") or headers.get("authorization")
    if not auth:
        raise AuthFailure("MissingAuthenticationTokenException", "Missing Authentication Token")
    m = _AUTH.fullmatch(auth.strip())
    if m is None:
        raise AuthFailure("IncompleteSignatureException", f"Authorization header requires 'Credential', "
                          f"'Signature' and 'SignedHeaders' parameters. Authorization={auth[:40]}")
    scope = m.groupdict()
    if scope["service"] != service:
        raise AuthFailure("InvalidSignatureException",
                          f"Credential should be scoped to correct service: '{service}'.")
    if not _REGION.fullmatch(scope["region"]):
        raise AuthFailure("InvalidSignatureException", f"Credential should be scoped to a valid region, "
                          f"not '{scope['region']}'.")
    lower = {k.lower(): v for k, v in headers.items()}
    amz_date = lower.get("x-amz-date")
    if not amz_date:
        raise AuthFailure("IncompleteSignatureException", "Authorization header requires existence of either "
                          "a 'X-Amz-Date' or a 'Date' header.")
    try:
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise AuthFailure("IncompleteSignatureException", f"Invalid X-Amz-Date: {amz_date}") from None
    if abs((now or dt.datetime.now(dt.UTC)) - when) > MAX_SKEW or amz_date[:8] != scope["date"]:
        raise AuthFailure("InvalidSignatureException", "Signature expired or not yet current: " + amz_date)
    signed = scope["signed"].split(";")
    missing = [h for h in ("host", "x-amz-date") if h not in signed] + [h for h in signed if h not in lower]
    if missing:
        raise AuthFailure("InvalidSignatureException", f"signed headers missing: {', '.join(missing)}")
    if secret is not None:
        expected = expected_signature(method, url, {h: lower[h] for h in signed}, body, scope["key"], secret,
                                      scope["region"], scope["service"], amz_date)
        if expected != scope["sig"]:
            raise AuthFailure("InvalidSignatureException", "The request signature we calculated does not match "
                              "the signature you provided. Check your AWS Secret Access Key and signing "
                              "method. Consult the service documentation for details.")
    return scope


# ---------------------------------------------------------------- service-model validation
@functools.cache
def service_shapes(service: str = "bedrock-runtime") -> dict[str, Any]:
    from botocore.loaders import Loader

    return Loader().load_service_model(service, "service-2")["shapes"]  # type: ignore[no-any-return]


class Invalid(Exception):
    pass


def _constraint(path: str, value: Any, what: str) -> Invalid:
    shown = orjson.dumps(value).decode()[:80] if value is not None else "null"
    return Invalid(f"1 validation error detected: Value {shown} at '{path}' failed to satisfy constraint: "
                   f"{what}")


def validate_shape(shape_name: str, value: Any, path: str = "", shapes: dict[str, Any] | None = None) -> None:
    """Raise Invalid (Bedrock's wording) where `value` does not fit the shape; unknown keys included."""
    shapes = shapes if shapes is not None else service_shapes()
    s = shapes[shape_name]
    kind = s["type"]
    if kind == "structure":
        if s.get("document"):
            return
        if not isinstance(value, dict):
            raise _constraint(path, value, "Member must be an object")
        members = {k: v for k, v in s["members"].items() if "location" not in v}
        for key in value:
            if key not in members:
                raise Invalid(f"Malformed input request: #{('/' + path) if path else ''}: extraneous key "
                              f"[{key}] is not permitted, please reformat your input and try again.")
        for key in s.get("required") or []:
            if key in members and value.get(key) is None:
                raise _constraint(f"{path}.{key}".lstrip("."), None, "Member must not be null")
        if s.get("union") and len([k for k, v in value.items() if v is not None]) != 1:
            raise Invalid(f"1 validation error detected: '{path}' must have exactly one member set")
        for key, v in value.items():
            validate_shape(members[key]["shape"], v, f"{path}.{key}".lstrip("."), shapes)
    elif kind == "list":
        if not isinstance(value, list):
            raise _constraint(path, value, "Member must be a list")
        if len(value) < s.get("min", 0) or ("max" in s and len(value) > s["max"]):
            raise _constraint(path, len(value), f"Member must have length between {s.get('min', 0)} "
                              f"and {s.get('max', 'inf')}")
        for i, v in enumerate(value):
            validate_shape(s["member"]["shape"], v, f"{path}.{i + 1}.member", shapes)
    elif kind == "map":
        if not isinstance(value, dict):
            raise _constraint(path, value, "Member must be a map")
        for k, v in value.items():
            validate_shape(s["value"]["shape"], v, f"{path}.{k}", shapes)
    elif kind == "string":
        if not isinstance(value, str):
            raise _constraint(path, value, "Member must be a string")
        if "enum" in s and value not in s["enum"]:
            raise _constraint(path, value, f"Member must satisfy enum value set: [{', '.join(s['enum'])}]")
        if len(value) < s.get("min", 0) or ("max" in s and len(value) > s["max"]):
            raise _constraint(path, value, f"Member must have length between {s.get('min', 0)} and "
                              f"{s.get('max', 'inf')}")
    elif kind in ("integer", "long", "float", "double"):
        ok = isinstance(value, int) if kind in ("integer", "long") else isinstance(value, int | float)
        if not ok or isinstance(value, bool):
            raise _constraint(path, value, f"Member must be a{'n' if kind == 'integer' else ''} {kind}")
        if ("min" in s and value < s["min"]) or ("max" in s and value > s["max"]):
            raise _constraint(path, value, f"Member must be between {s.get('min')} and {s.get('max')}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise _constraint(path, value, "Member must be a boolean")
    elif kind == "blob":
        try:
            if not isinstance(value, str) or not base64.b64decode(value, validate=True):
                raise ValueError
        except (ValueError, binascii.Error):
            raise _constraint(path, "<blob>", "Member must be base64-encoded bytes") from None
