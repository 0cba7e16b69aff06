"""Contact data at rest (SPEC §3): encryption and the keyed dedupe hash.

One master key (config `CONTACT_ENCRYPTION_KEY`, 32 bytes in urlsafe base64) yields two
independent subkeys through HKDF-SHA256: one for AES-256-GCM, one for HMAC-SHA256. A
leak of hashes therefore says nothing about the encryption key and vice versa, and
duplicates are found by comparing hashes, never by decrypting.

Ciphertext layout: 1 key-id byte | 12-byte random nonce | AES-GCM ciphertext and tag.
The key id is also bound as associated data, so a blob cannot be relabelled with
another key id. Rotation: build the vault with the new key under a new `key_id` and
pass the old keys in `previous_keys`; new writes use the new key, old blobs still
decrypt. The dedupe hash follows the current key, so rotating it means rehashing.
"""
import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.errors import DomainError

NONCE_BYTES = 12
HASH_BYTES = 16  # 128 bits: collisions are out of reach for any realistic lead count
HASH_KINDS = frozenset({"phone", "email"})
CONTACT_FIELDS = ("first_name", "last_name", "email", "phone", "ip")  # a lead's sealed blob
_ENCRYPTION_INFO = b"leadx/contact-encryption/aes-256-gcm/v1"
_HASH_INFO = b"leadx/contact-dedupe/hmac-sha256/v1"
# What json.dumps(..., ensure_ascii=False, separators=(",", ":")) does, without
# building an encoder for every contact sealed.
_CONTACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def contact_json(values: list[str | None]) -> str:
    """_CONTACT_JSON(values), written directly when no value needs escaping (the usual
    case: validated text has no quotes, backslashes or control characters), which is
    a third of the encoder's cost on every ingested row."""
    for value in values:
        if value is not None and ('"' in value or "\\" in value or not value.isprintable()):
            return _CONTACT_JSON(values)
    return "[" + ",".join("null" if value is None else f'"{value}"' for value in values) + "]"


class ContactKeyError(DomainError):
    """The configured master key is missing or malformed (a deployment error)."""

    code = "contact_key_invalid"
    status = 500


class ContactDecryptError(DomainError):
    """A stored blob was altered, truncated or written under an unknown key."""

    code = "contact_decrypt_failed"
    status = 500


def _master_key_bytes(master_key: str | bytes) -> bytes:
    if isinstance(master_key, bytes) and len(master_key) == 32:
        return master_key
    if not master_key:
        raise ContactKeyError("CONTACT_ENCRYPTION_KEY is not set.")
    text = master_key.decode("ascii", "replace") if isinstance(master_key, bytes) else master_key
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ContactKeyError("CONTACT_ENCRYPTION_KEY is not urlsafe base64.") from exc
    if len(raw) != 32:
        raise ContactKeyError(
            f"CONTACT_ENCRYPTION_KEY must decode to 32 bytes, not {len(raw)}."
        )
    return raw


def _subkey(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


class ContactVault:
    """Encrypts contact fields and computes their dedupe hashes. Build once, reuse."""

    def __init__(
        self,
        master_key: str | bytes,
        *,
        key_id: int = 1,
        previous_keys: Mapping[int, str | bytes] | None = None,
    ):
        if not 0 <= key_id <= 255:
            raise ContactKeyError("The key id must fit in one byte (0-255).")
        master = _master_key_bytes(master_key)
        self.key_id = key_id
        self._prefix = bytes([key_id])
        # One AESGCM object per key: constructing it is the expensive part.
        self._ciphers: dict[int, AESGCM] = {
            old_id: AESGCM(_subkey(_master_key_bytes(old), _ENCRYPTION_INFO))
            for old_id, old in (previous_keys or {}).items()
        }
        self._ciphers[key_id] = AESGCM(_subkey(master, _ENCRYPTION_INFO))
        self._cipher = self._ciphers[key_id]
        hash_key = self._hash_key = _subkey(master, _HASH_INFO)
        # HMAC(key, kind \0 value), keyed once per kind: copying a keyed HMAC is
        # cheaper than keying a new one for every row.
        self._hashers = {
            kind: hmac.new(hash_key, kind.encode() + b"\x00", hashlib.sha256)
            for kind in HASH_KINDS
        }

    def encrypt(self, text: str | None) -> bytes | None:
        if text is None:
            return None
        nonce = os.urandom(NONCE_BYTES)
        return self._prefix + nonce + self._cipher.encrypt(nonce, text.encode(), self._prefix)

    def decrypt(self, blob: bytes | None) -> str | None:
        if blob is None:
            return None
        blob = bytes(blob)  # database drivers may hand back memoryview
        if len(blob) < 1 + NONCE_BYTES + 16:
            raise ContactDecryptError("The encrypted contact is truncated.")
        cipher = self._ciphers.get(blob[0])
        if cipher is None:
            raise ContactDecryptError(
                f"The encrypted contact uses key id {blob[0]}, which is not configured."
            )
        nonce = blob[1 : 1 + NONCE_BYTES]
        try:
            plain = cipher.decrypt(nonce, blob[1 + NONCE_BYTES :], blob[:1])
        except InvalidTag as exc:
            raise ContactDecryptError(
                "The encrypted contact failed its integrity check (altered or wrong key)."
            ) from exc
        return plain.decode()

    def seal_contact(self, first_name: str | None, last_name: str | None, email: str | None,
                     phone: str | None, ip: str | None) -> bytes:
        """A lead's contacts as one blob: one nonce and one tag instead of five, and
        nothing about which parts are present is visible without the key."""
        return self.encrypt(contact_json([first_name, last_name, email, phone, ip]))

    def seal_contacts(self, *columns: list[str | None]) -> list[bytes]:
        """seal_contact of each row of five columns (CONTACT_FIELDS): one random read
        for them all, and when no value needs escaping (the usual case, checked on all
        the texts at once) the JSON written by one format call a row and encoded in one
        call for the chunk, its rows split at line breaks that no printable text holds."""
        count = len(columns[0])
        if not count:
            return []
        parts, args = [], []
        for column in columns:  # quotes in the row's pattern where a column has no null
            if None in column:
                parts.append("{}")
                args.append(["null" if value is None else f'"{value}"' for value in column])
            else:
                parts.append('"{}"')
                args.append(column)
        texts = list(map(f"[{','.join(parts)}]".format, *args))
        plain = "".join(texts)
        quotes = 2 * sum(count - column.count(None) for column in columns)
        if plain.isprintable() and "\\" not in plain and plain.count('"') == quotes:
            data = "\n".join(texts).encode().split(b"\n")
        else:
            data = [_CONTACT_JSON(list(values)).encode() for values in zip(*columns)]
        return self._encrypted(data)

    def encrypt_many(self, texts: list[str]) -> list[bytes]:
        """encrypt of each text, with one random read for them all."""
        return self._encrypted([text.encode() for text in texts])

    def _encrypted(self, data: list[bytes]) -> list[bytes]:
        prefix, encrypt = self._prefix, self._cipher.encrypt
        nonces = os.urandom(NONCE_BYTES * len(data))
        sealed = []
        append = sealed.append
        for at, text in zip(range(0, NONCE_BYTES * len(data), NONCE_BYTES), data):
            nonce = nonces[at:at + NONCE_BYTES]
            append(prefix + nonce + encrypt(nonce, text, prefix))
        return sealed

    def open_contact(self, blob: bytes) -> dict[str, str | None]:
        """The contacts sealed by `seal_contact`, by field name (CONTACT_FIELDS)."""
        return dict(zip(CONTACT_FIELDS, json.loads(self.decrypt(blob))))

    def dedupe_hash(self, kind: str, normalised_value: str) -> bytes:
        """Keyed hash of a normalised phone or email; the kind keeps the two apart."""
        try:
            hasher = self._hashers[kind].copy()
        except KeyError:
            raise ValueError(f"Unknown contact kind {kind!r}; expected phone or email.") from None
        hasher.update(normalised_value.encode())
        return hasher.digest()[:HASH_BYTES]

    def dedupe_hashes(self, kind: str, values: list[str | None]) -> list[bytes | None]:
        """dedupe_hash of each value (None for a missing one), as HMAC's two keyed SHA-256
        states (RFC 2104) copied directly: the hmac module's copy() is Python code."""
        if kind not in HASH_KINDS:
            raise ValueError(f"Unknown contact kind {kind!r}; expected phone or email.")
        key = self._hash_key.ljust(hashlib.sha256().block_size, b"\x00")
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in key) + kind.encode() + b"\x00")
        outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        hashes = []
        for value in values:
            if value:
                keyed = inner.copy()
                keyed.update(value.encode())
                digest = outer.copy()
                digest.update(keyed.digest())
                hashes.append(digest.digest()[:HASH_BYTES])
            else:
                hashes.append(None)
        return hashes

    def derived_key(self, purpose: bytes) -> bytes:
        """A 32-byte key for one purpose (a consent certificate's contact hash), from the
        hash subkey: it can be handed out without revealing the dedupe key."""
        return hmac.new(self._hash_key, b"derived\x00" + purpose, hashlib.sha256).digest()


def vault_from_config(config: Mapping) -> ContactVault:
    """The vault for an app config (or any mapping with CONTACT_ENCRYPTION_KEY)."""
    return ContactVault(config.get("CONTACT_ENCRYPTION_KEY") or "")


def current_vault() -> ContactVault:
    """The running app's vault, built once per key: contacts are encrypted and
    decrypted in many places (ingest, delivery, webhooks, reports)."""
    from flask import current_app  # imported here: ingest workers load this module

    cache = current_app.extensions.setdefault("contact_vault", {})
    key = current_app.config["CONTACT_ENCRYPTION_KEY"]
    if key not in cache:
        cache[key] = vault_from_config(current_app.config)
    return cache[key]


_ACCOUNT_SECRET_INFO = b"leadx/account-secrets/aes-256-gcm/v1"


class AccountSecrets:
    """Small secrets of an account kept at rest (a two-factor seed): AES-256-GCM under
    a third HKDF subkey of the same master key, so they share its storage and rotation
    story but no key with the contacts. The caller's `context` (e.g. "totp:42") is
    bound as associated data: a blob copied to another user's row does not open."""

    def __init__(self, master_key: str | bytes):
        self._cipher = AESGCM(_subkey(_master_key_bytes(master_key), _ACCOUNT_SECRET_INFO))

    def seal(self, text: str, context: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._cipher.encrypt(nonce, text.encode(), context.encode())

    def open(self, blob: bytes, context: str) -> str:
        blob = bytes(blob)
        try:
            return self._cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:],
                                        context.encode()).decode()
        except InvalidTag as exc:
            raise ContactDecryptError("An account secret failed its integrity check "
                                      "(altered, moved or wrong key).") from exc


def account_secrets() -> AccountSecrets:
    from flask import current_app

    cache = current_app.extensions.setdefault("account_secrets", {})
    key = current_app.config["CONTACT_ENCRYPTION_KEY"]
    if key not in cache:
        cache[key] = AccountSecrets(key or "")
    return cache[key]
