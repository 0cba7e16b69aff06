"""ContactVault: encryption of contact fields and the keyed dedupe hash."""
import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.services.crypto import (
    HASH_BYTES, NONCE_BYTES, ContactDecryptError, ContactKeyError, ContactVault,
    vault_from_config,
)
from config import DevelopmentConfig

KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.urlsafe_b64encode(bytes(range(1, 33))).decode()


@pytest.fixture(scope="module")
def vault() -> ContactVault:
    return ContactVault(KEY)


@pytest.mark.parametrize("text", ["+79161234567", "a@example.com", "Иван Петров", "", "😀" * 50])
def test_round_trip(vault, text):
    blob = vault.encrypt(text)
    assert isinstance(blob, bytes)
    assert vault.decrypt(blob) == text
    assert vault.decrypt(memoryview(blob)) == text  # as some database drivers return it


def test_none_passes_through(vault):
    assert vault.encrypt(None) is None
    assert vault.decrypt(None) is None


def test_layout_is_key_id_nonce_ciphertext_tag(vault):
    blob = vault.encrypt("abc")
    assert blob[0] == 1
    assert len(blob) == 1 + NONCE_BYTES + len("abc") + 16
    assert b"abc" not in blob


def test_random_nonce_makes_each_ciphertext_different(vault):
    assert vault.encrypt("same") != vault.encrypt("same")


@pytest.mark.parametrize("position", [0, 1, NONCE_BYTES, NONCE_BYTES + 1, -1])
def test_any_changed_byte_is_refused(vault, position):
    blob = bytearray(vault.encrypt("+79161234567"))
    blob[position] ^= 0x01
    with pytest.raises(ContactDecryptError):
        vault.decrypt(bytes(blob))


def test_truncated_blob_is_refused(vault):
    blob = vault.encrypt("+79161234567")
    for length in (0, 5, 1 + NONCE_BYTES + 15, len(blob) - 1):
        with pytest.raises(ContactDecryptError):
            vault.decrypt(blob[:length])


def test_wrong_key_is_refused(vault):
    with pytest.raises(ContactDecryptError, match="integrity"):
        ContactVault(OTHER_KEY).decrypt(vault.encrypt("secret"))


def test_relabelled_key_id_is_refused():
    """The key id is authenticated: moving a blob to another key id breaks it."""
    both = ContactVault(KEY, key_id=2, previous_keys={1: KEY})
    blob = bytearray(both.encrypt("secret"))
    blob[0] = 1
    with pytest.raises(ContactDecryptError):
        both.decrypt(bytes(blob))


def test_rotation_reads_old_blobs_and_writes_new_ones():
    old = ContactVault(KEY, key_id=1)
    old_blob = old.encrypt("+79161234567")
    new = ContactVault(OTHER_KEY, key_id=2, previous_keys={1: KEY})
    assert new.decrypt(old_blob) == "+79161234567"
    new_blob = new.encrypt("+79161234567")
    assert new_blob[0] == 2
    with pytest.raises(ContactDecryptError, match="key id 2"):
        old.decrypt(new_blob)


def test_dedupe_hash_is_stable_across_instances_and_releases():
    value = ContactVault(KEY).dedupe_hash("phone", "+79161234567")
    assert value == ContactVault(KEY).dedupe_hash("phone", "+79161234567")
    assert len(value) == HASH_BYTES
    # Pinned: changing the derivation silently would hide every stored duplicate.
    assert value.hex() == _reference_hash(KEY, "phone", "+79161234567")


def _reference_hash(master: str, kind: str, value: str) -> str:
    """The documented construction, computed independently of the vault."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"leadx/contact-dedupe/hmac-sha256/v1").derive(
                   base64.urlsafe_b64decode(master))
    return hmac.new(key, f"{kind}\x00{value}".encode(), hashlib.sha256).digest()[:HASH_BYTES].hex()


def test_hash_kinds_never_collide(vault):
    value = "x@example.com"
    assert vault.dedupe_hash("phone", value) != vault.dedupe_hash("email", value)
    with pytest.raises(ValueError):
        vault.dedupe_hash("name", "Ivan")


def test_keys_are_separated(vault):
    """Hash key, encryption key and master key are three different keys."""
    master = base64.urlsafe_b64decode(KEY)
    encryption_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                          info=b"leadx/contact-encryption/aes-256-gcm/v1").derive(master)
    message = b"phone\x00+79161234567"
    digest = vault.dedupe_hash("phone", "+79161234567")
    for other in (master, encryption_key):
        assert hmac.new(other, message, hashlib.sha256).digest()[:HASH_BYTES] != digest
    assert ContactVault(OTHER_KEY).dedupe_hash("phone", "+79161234567") != digest


def test_vault_from_config_uses_the_configured_key():
    vault = vault_from_config({"CONTACT_ENCRYPTION_KEY": DevelopmentConfig.CONTACT_ENCRYPTION_KEY})
    assert vault.decrypt(vault.encrypt("x")) == "x"
    assert vault.dedupe_hash("email", "a@b.co") == ContactVault(
        DevelopmentConfig.CONTACT_ENCRYPTION_KEY).dedupe_hash("email", "a@b.co")


def test_raw_32_byte_key_is_accepted():
    raw = bytes(range(32))
    assert (ContactVault(raw).dedupe_hash("email", "a@b.co")
            == ContactVault(KEY).dedupe_hash("email", "a@b.co"))


@pytest.mark.parametrize("bad", ["", None, "not base64 !!", base64.b64encode(b"short").decode()])
def test_bad_master_key_is_a_clear_error(bad):
    with pytest.raises(ContactKeyError):
        ContactVault(bad)
    with pytest.raises(ContactKeyError):
        vault_from_config({"CONTACT_ENCRYPTION_KEY": bad})



def test_contact_json_is_the_encoders_text():
    """The direct form is byte for byte what the JSON encoder writes, and the encoder
    still writes whatever needs escaping."""
    import json
    import random

    from app.services.crypto import _CONTACT_JSON, contact_json

    rng = random.Random(5)
    alphabet = ['a', 'Я', 'é', ' ', '"', '\\', '\n', '\t', '\x00', '\x7f', '\u2028', '😀', '+', '@']
    for _ in range(20_000):
        values = [None if rng.random() < 0.2 else
                  "".join(rng.choice(alphabet) for _ in range(rng.randrange(6)))
                  for _ in range(5)]
        assert contact_json(values) == _CONTACT_JSON(values)
        assert json.loads(contact_json(values)) == values


@pytest.mark.parametrize("columns", [
    (["Ivan", None], ["Petrov", "Ng"], ["ivan@example.com", None], [None, "+12125550100"],
     ["203.0.113.7", None]),
    # One value needs escaping: the whole chunk goes through the JSON encoder.
    (["Ann \"Annie\"", "Bo"], ["O\\Brien", ""], [None, "bo@example.com"], ["+7916", None],
     [None, "::1"]),
    ([], [], [], [], []),
])
def test_sealing_a_chunk_is_sealing_each_row(vault, columns):
    """seal_contacts is seal_contact row by row: the same JSON under each nonce."""
    sealed = vault.seal_contacts(*columns)
    assert len(sealed) == len(columns[0])
    assert len({blob[1:1 + NONCE_BYTES] for blob in sealed}) == len(sealed)
    for blob, values in zip(sealed, zip(*columns)):
        one = vault.seal_contact(*values)
        assert vault.decrypt(blob) == vault.decrypt(one)
        assert len(blob) == len(one)


def test_encrypting_many_is_encrypting_each(vault):
    """encrypt_many: each text under its own nonce, in encrypt's layout."""
    texts = ["+79161234567", "", "Иван Петров", "line\nbreak", "😀" * 50]
    blobs = vault.encrypt_many(texts)
    assert [vault.decrypt(blob) for blob in blobs] == texts
    assert [len(blob) for blob in blobs] == [len(vault.encrypt(text)) for text in texts]
    assert len({blob[1:1 + NONCE_BYTES] for blob in blobs}) == len(texts)
    assert vault.encrypt_many([]) == []


def test_hashing_a_column_is_hashing_each_value(vault):
    values = ["+79161234567", None, "", "a@b.co"]
    assert vault.dedupe_hashes("phone", values) == [
        vault.dedupe_hash("phone", value) if value else None for value in values]


def _generated(rng, count: int, alphabet: list[str]) -> list[str | None]:
    return [None if rng.random() < 0.2 else
            "".join(rng.choice(alphabet) for _ in range(rng.randrange(8)))
            for _ in range(count)]


def test_column_hashes_are_the_documented_hmac(vault):
    """Stored hashes are lookup keys of existing leads: dedupe_hashes and dedupe_hash
    give the plain HMAC of every generated value, byte for byte."""
    import random

    rng = random.Random(11)
    alphabet = ["a", "Z", "7", "+", "@", ".", "Я", "é", "😀", " ", "\x00"]
    for kind in ("email", "phone"):
        values = _generated(rng, 3000, alphabet)
        expected = [bytes.fromhex(_reference_hash(KEY, kind, value)) if value else None
                    for value in values]
        assert vault.dedupe_hashes(kind, values) == expected
        assert [vault.dedupe_hash(kind, value) if value else None
                for value in values] == expected


def test_sealed_chunks_hold_the_encoders_json(vault):
    """Each blob of seal_contacts opens to exactly what the JSON encoder writes of its
    row, in chunks of clean text (the direct form) and chunks where one value needs
    escaping or is not printable (every row through the encoder)."""
    import random

    from app.services.crypto import _CONTACT_JSON

    rng = random.Random(7)
    clean = ["a", "Я", "é", " ", "+", "@", "😀", "{", "}", "[", ",", "null"]
    awkward = ['"', "\\", "\n", "\t", "\x00", "\x7f", "\u2028"]
    for chunk in range(300):
        count = rng.randrange(1, 40)
        columns = [_generated(rng, count, clean) for _ in range(5)]
        if chunk % 3 == 0:  # one awkward value somewhere in the chunk
            columns[rng.randrange(5)][rng.randrange(count)] = rng.choice(awkward) + "x"
        sealed = vault.seal_contacts(*columns)
        assert [vault.decrypt(blob) for blob in sealed] == [
            _CONTACT_JSON(list(values)) for values in zip(*columns)]
