"""Encryption at rest: envelope encryption (AES-256-GCM, a random data key per object, wrapped by the
tenant's versioned key-encryption key) with a local keyring, AWS KMS or Vault transit as the KMS.

Start here: :class:`KeyService` (encrypt / decrypt / rotate / rewrap / destroy / status),
:func:`check_keys` (startup gate), :func:`encrypt_file` and :func:`open_decrypted`. See docs/security.md.
"""

from trialsynth.security.envelope import ALGORITHM, EnvelopeHeader, is_encrypted, read_header, stable_sha256
from trialsynth.security.errors import (
    DecryptionError,
    KeyCheckError,
    KeyDestroyedError,
    KeyNotFoundError,
    SecurityError,
    UnwrapError,
)
from trialsynth.security.kms import KeyId, KeyManager, KeyVersion
from trialsynth.security.service import (
    KeyService,
    RewrapReport,
    TenantStatus,
    check_keys,
    encrypt_file,
    get_kms,
    keyring_path,
    open_decrypted,
)

__all__ = [
    "ALGORITHM", "DecryptionError", "EnvelopeHeader", "KeyCheckError", "KeyDestroyedError", "KeyId", "KeyManager",
    "KeyNotFoundError", "KeyService", "KeyVersion", "RewrapReport", "SecurityError", "TenantStatus", "UnwrapError",
    "check_keys", "encrypt_file", "get_kms", "is_encrypted", "keyring_path", "open_decrypted", "read_header",
    "stable_sha256",
]
