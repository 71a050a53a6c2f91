"""Standard Webhooks signing (standardwebhooks.com): the headers a receiver verifies.

`webhook-id` is the event's id (the same on every retry: the receiver's idempotency key),
`webhook-timestamp` the attempt's unix seconds, `webhook-signature` one `v1,<base64 HMAC-SHA256 of
"id.timestamp.body">` per secret, space-separated: during a rotation the old and the new secret both
sign, as the spec allows. The HMAC is the official `standardwebhooks` package's (no dependencies of its
own), so what the gateway sends is what the spec's libraries verify.
"""

from __future__ import annotations

import base64
import secrets as _secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook

from proxy.config.webhooks import SECRET_PREFIX


def new_secret() -> str:
    """`whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode()


def signature(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    when = datetime.fromtimestamp(timestamp, UTC)
    text = body.decode()
    return " ".join(Webhook(s).sign(msg_id, when, text) for s in secrets)


def headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secrets, msg_id, timestamp, body)}
