"""Errors of the encryption layer. All are ValueErrors, so the CLI prints them as one clear line.

Every message names the object (path) and the key id (``tenant/vN``) involved and says what to do.
"""

from __future__ import annotations


class SecurityError(ValueError):
    """Base class of every error raised by :mod:`trialsynth.security`."""


class KeyNotFoundError(SecurityError):
    """The KMS has no key for that tenant / version (never created, or deleted outside trialsynth)."""


class KeyDestroyedError(KeyNotFoundError):
    """The key version was destroyed on purpose (crypto-shredding): its objects are unrecoverable."""


class KeyCheckError(SecurityError):
    """A configured key is missing, malformed, of the wrong type or length, or fails its canary.

    Raised by :func:`trialsynth.security.check_keys`; the process must refuse to start.
    """


class UnwrapError(SecurityError):
    """The KMS refused to unwrap a data key (wrong key material, or wrapped for another object)."""


class DecryptionError(SecurityError):
    """An object could not be decrypted: truncated, corrupted, tampered with, moved, or wrong key.

    No plaintext is ever returned for a segment that failed authentication, and the ciphertext on
    disk is never modified or deleted.
    """
