"""Keyed digests and encrypted (format 2) objects, below the driver."""

from __future__ import annotations

import os

import blake3
import pytest

from casstore import KeyRing
from casstore._crypto import Ciphers
from casstore._format.compression import encode_object
from casstore._format.digest import content_digest as plain_digest
from casstore._format.encrypted import ObjectCipher, decode_object, encode_encrypted_object
from casstore._format.header import Codec
from casstore.errors import IntegrityError, MissingKeyError

K1 = bytes(range(32))
K2 = bytes(range(100, 132))
DATA = b'{"status":"ok","rows":[' + b'{"id":1,"name":"customer"},' * 40 + b"]}"
KEY = "v1/default/order-42/" + "ab" * 32


def sealed(cipher: ObjectCipher, data: bytes = DATA, level: int | None = 3) -> bytes:
    digest = cipher.digest(data)
    return encode_encrypted_object(data, level, cipher, digest=digest, key=KEY)[1]


def test_keyed_digest_is_stable_per_key_and_unrelated_to_plain_blake3() -> None:
    one, same, other = ObjectCipher("k1", K1), ObjectCipher("k1", K1), ObjectCipher("k2", K2)
    assert one.digest(DATA) == same.digest(DATA)
    assert one.digest(DATA) != other.digest(DATA)
    assert one.digest(DATA) != plain_digest(DATA) == blake3.blake3(DATA).digest()
    # The digest key is derived, not the keyring key itself.
    assert one.digest(DATA) != blake3.blake3(DATA, key=K1).digest()
    big = os.urandom(3 << 20)  # the multi-threaded hashing path gives the same digest
    assert (
        one.digest(big)
        == blake3.blake3(
            big,
            key=blake3.blake3(
                K1, derive_key_context="casstore 2026-11-25 content digest key v1"
            ).digest(),
        ).digest()
    )


@pytest.mark.parametrize("level", [None, 3])
def test_encryption_is_deterministic_and_round_trips(level: int | None) -> None:
    cipher = ObjectCipher("k1", K1)
    obj = sealed(cipher, level=level)
    assert obj == sealed(ObjectCipher("k1", K1), level=level)  # equal payloads, equal objects
    assert DATA not in obj
    assert b"customer" not in obj
    digest = cipher.digest(DATA)
    assert decode_object(obj, size=len(DATA), key=KEY, cipher=cipher, digest=digest) == DATA


def test_compress_then_encrypt() -> None:
    cipher = ObjectCipher("k1", K1)
    plain_codec, plain = encode_object(DATA, 3)
    codec, obj = encode_encrypted_object(DATA, 3, cipher, digest=cipher.digest(DATA), key=KEY)
    assert codec is plain_codec is Codec.ZSTD
    # header (7 + 2) + compressed body + 16-byte tag: the ciphertext is compressed-sized.
    assert len(obj) == 9 + (len(plain) - 5) + 16 < len(DATA)


def test_every_flipped_byte_fails_before_anything_is_decoded() -> None:
    cipher = ObjectCipher("k1", K1)
    obj = sealed(cipher)
    digest = cipher.digest(DATA)
    for position in range(len(obj)):
        tampered = bytearray(obj)
        tampered[position] ^= 0x01
        with pytest.raises(IntegrityError):
            decode_object(bytes(tampered), size=len(DATA), key=KEY, cipher=cipher, digest=digest)


def test_object_under_another_key_or_with_another_key_fails_authentication() -> None:
    cipher = ObjectCipher("k1", K1)
    obj = sealed(cipher)
    digest = cipher.digest(DATA)
    other_key = KEY.replace("order-42", "order-43")
    with pytest.raises(IntegrityError, match="failed authentication"):
        decode_object(obj, size=len(DATA), key=other_key, cipher=cipher, digest=digest)
    impostor = ObjectCipher("k1", K2)  # same id, other material
    with pytest.raises(IntegrityError, match="sealed with a different key named 'k1'"):
        decode_object(obj, size=len(DATA), key=KEY, cipher=impostor, digest=digest)


def test_plain_and_encrypted_objects_never_stand_in_for_each_other() -> None:
    cipher = ObjectCipher("k1", K1)
    digest = cipher.digest(DATA)
    with pytest.raises(IntegrityError, match="encrypted with key 'k1' but its claim is not"):
        decode_object(sealed(cipher), size=len(DATA), key=KEY)
    _, plain = encode_object(DATA, 3)
    with pytest.raises(IntegrityError, match="says not encrypted"):
        decode_object(plain, size=len(DATA), key=KEY, cipher=cipher, digest=digest)
    with pytest.raises(IntegrityError, match=r"encrypted with key 'k2'.*says key 'k1'"):
        decode_object(
            sealed(cipher), size=len(DATA), key=KEY, cipher=ObjectCipher("k2", K2), digest=digest
        )


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (b"CAS\x02\x01\x01", "truncated"),
        (b"CAS\x02\x01\x09\x02k1" + bytes(20), "unknown cipher 9"),
        (b"CAS\x02\x01\x01\x00" + bytes(20), "malformed key id"),
        (b"CAS\x02\x01\x01\x02k/" + bytes(20), "malformed key id"),
        (b"CAS\x02\x01\x01\x20k1", "truncated"),
        (b"CAS\x02\x01\x01\x21" + b"k" * 40, "malformed key id"),
        (b"CAS\x03\x01", "unsupported format version 3"),
    ],
)
def test_malformed_encrypted_headers(obj: bytes, message: str) -> None:
    cipher = ObjectCipher("k1", K1)
    with pytest.raises(IntegrityError, match=message):
        decode_object(obj, size=10, key=KEY, cipher=cipher, digest=bytes(32))


def test_ciphers_name_the_missing_key() -> None:
    ciphers = Ciphers(KeyRing({"new": K2, "old": K1}))
    assert ciphers.active.key_id == "new"
    assert ciphers.get("old", key=KEY).digest(DATA) == ObjectCipher("old", K1).digest(DATA)
    with pytest.raises(MissingKeyError, match=r"key 'gone'.*keyring=\['new', 'old'\]") as info:
        ciphers.get("gone", key=KEY)
    assert info.value.key_id == "gone"
    assert repr(ciphers.active) == "ObjectCipher(key_id='new')"
