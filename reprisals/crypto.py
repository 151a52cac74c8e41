"""Column encryption for identity and free text, bound to its row.

Fernet (AES-128-CBC + HMAC) via MultiFernet: encrypt with the first key, decrypt with any, so keys
rotate by putting a new one first, running the rotation, then dropping the old one. Fernet has no
associated data, so the row's scope (e.g. ``detainee:42:name``) is sealed inside the plaintext and
checked on decrypt: a ciphertext copied into another row is refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from reprisals.errors import ConfigurationError, IdentityUnreadable


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


class Cipher:
    """The configured keys. ``pseudonym_key`` (a separate secret, REPRISALS_PSEUDONYM_KEY) keys the pseudonyms'
    hash (reprisals.pseudonyms); it travels with the cipher because everything that records identity holds one.
    Without it, people are not linked as cases are opened (``reprisals people link`` links them later)."""

    def __init__(self, keys: Sequence[str], *, pseudonym_key: str | None = None) -> None:
        self.pseudonym_key = pseudonym_key.encode("utf-8") if pseudonym_key else None
        if not keys:
            raise ConfigurationError(["REPRISALS_ENCRYPTION_KEYS: at least one key is required"])
        fernets = []
        for i, key in enumerate(keys):
            try:
                fernets.append(Fernet(key.strip().encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                raise ConfigurationError([
                    f"REPRISALS_ENCRYPTION_KEYS: key {i + 1} is not a Fernet key "
                    "(32 url-safe base64-encoded bytes; make one with `reprisals keys generate`)"
                ]) from None
        self._primary = fernets[0]
        self._multi = MultiFernet(fernets)

    def encrypt(self, scope: str, value: str) -> str:
        plaintext = json.dumps({"s": scope, "v": value}, separators=(",", ":")).encode("utf-8")
        return self._multi.encrypt(plaintext).decode("ascii")

    def decrypt(self, scope: str, token: str) -> str:
        try:
            plaintext = self._multi.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise IdentityUnreadable(
                f"{scope}: cannot be decrypted with the configured keys (wrong or removed key, or damaged data)"
            ) from None
        sealed = _unseal(plaintext)
        if sealed is None:
            # Raised outside any except block: the parse error (which holds the plaintext) must not
            # travel with the exception as its __context__.
            raise IdentityUnreadable(f"{scope}: the stored value is not in the sealed format (damaged or foreign data)")
        if sealed[0] != scope:
            raise IdentityUnreadable(f"{scope}: the stored value belongs to another record (moved ciphertext)")
        return sealed[1]

    def needs_rotation(self, token: str) -> bool:
        """True unless the token was made with the primary key."""
        try:
            self._primary.decrypt(token.encode("ascii"))
        except InvalidToken:
            return True
        return False

    def rotate(self, token: str) -> str:
        """Re-encrypt with the primary key (the scope inside is kept)."""
        try:
            return self._multi.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise IdentityUnreadable("a stored value cannot be decrypted with any configured key") from None


def _unseal(plaintext: bytes) -> tuple[str, str] | None:
    """(scope, value) from a sealed plaintext, or None if it is not one of ours."""
    try:
        sealed = json.loads(plaintext)
    except ValueError:  # includes UnicodeDecodeError
        return None
    if not isinstance(sealed, dict) or not isinstance(sealed.get("s"), str) or not isinstance(sealed.get("v"), str):
        return None
    return sealed["s"], sealed["v"]
