"""Pure logic: our signed JSON webhook (SPEC §11), the body and headers of one POST
with `X-Signature: sha256=<hex HMAC of the body with the order's webhook secret>`."""
import hashlib
import hmac
import json


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed(payload: dict, secret: str, event: str, delivery: str) -> tuple[dict, bytes]:
    """The headers and body of the POST carrying payload (delivery: our id for it)."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return {"Content-Type": "application/json", "User-Agent": "LeadX-Webhook/1",
            "X-Signature": signature(secret, body), "X-LeadX-Event": event,
            "X-LeadX-Delivery": delivery}, body
