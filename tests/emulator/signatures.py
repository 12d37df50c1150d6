"""Stateless thought signatures.

The real API returns opaque ``thoughtSignature`` blobs and rejects replayed model
parts whose signature is missing or does not belong to them (reference §4). To test
that a client stores and replays signatures byte-exact *on the same part*, the
emulator issues signatures that it can check later without keeping any state, so
they survive an emulator restart (or a second emulator with the same secret)::

    signature = b"RTEMU1" + mac + len(filler).to_bytes(4) + filler
    mac = HMAC-SHA256(secret, family | kind | sha256(payload))

``payload`` is the part's text (UTF-8) or its decoded image bytes, so a signature
moved to another part, or a part whose content changed, no longer verifies.
The filler is derived from the MAC and its length is recorded, so truncation is
detected too; the length is configurable to imitate the large real blobs (1-2 MB per image).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

MAGIC = b"RTEMU1"
_MAC_LEN = 32
_HEADER_LEN = len(MAGIC) + _MAC_LEN + 4

#: Documented escape hatches (Gemini API FAQ). Accepted for text parts only.
DUMMY_SIGNATURES: frozenset[bytes] = frozenset(
    {b"skip_thought_signature_validator", b"context_engineering_is_the_way_to_go"}
)


def _mac(secret: bytes, family: str, kind: str, payload: bytes) -> bytes:
    message = b"|".join((family.encode(), kind.encode(), hashlib.sha256(payload).digest()))
    return hmac.new(secret, message, hashlib.sha256).digest()


def _filler(mac: bytes, length: int) -> bytes:
    out = bytearray()
    block = mac
    while len(out) < length:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:length])


def issue(secret: bytes, family: str, kind: str, payload: bytes, filler: int = 256) -> str:
    """Return a standard-base64 signature for one response part (kind: "text" or "image")."""
    mac = _mac(secret, family, kind, payload)
    blob = MAGIC + mac + filler.to_bytes(4, "big") + _filler(mac, filler)
    return base64.b64encode(blob).decode("ascii")


def is_dummy(raw: str, decoded: bytes | None) -> bool:
    """True for the documented dummy values, sent either literally or base64-encoded."""
    return raw.encode() in DUMMY_SIGNATURES or (decoded is not None and decoded in DUMMY_SIGNATURES)


def verify(secret: bytes, family: str, kind: str, payload: bytes, decoded: bytes | None) -> bool:
    """Check a decoded signature against the part it is attached to."""
    if decoded is None or len(decoded) < _HEADER_LEN or not decoded.startswith(MAGIC):
        return False
    expected = _mac(secret, family, kind, payload)
    mac = decoded[len(MAGIC) : len(MAGIC) + _MAC_LEN]
    length = int.from_bytes(decoded[len(MAGIC) + _MAC_LEN : _HEADER_LEN], "big")
    filler = decoded[_HEADER_LEN:]
    return (
        hmac.compare_digest(mac, expected)
        and len(filler) == length
        and hmac.compare_digest(filler, _filler(expected, length))
    )
