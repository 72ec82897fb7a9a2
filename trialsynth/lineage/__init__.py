"""Audit-grade lineage: signed, hash-chained OpenLineage manifests, one chain per tenant/study.

Every materialization appends a manifest (:mod:`.manifest`: an OpenLineage RunEvent with the
``trialsynth_audit`` facet: input/output sha256s, code version and git sha, parameters, seed,
sequence, prev_hash, hash, Ed25519 signature) to its partition's chain (:mod:`.store`), kept in the
lake folder (embedded default) or in an S3 bucket under Object Lock COMPLIANCE retention
(:mod:`.backends`). Signed RFC 6962 checkpoints (:mod:`.merkle`) pin the chain so a dropped tail or a
rebuilt chain shows. :mod:`.verify` checks it all independently and names the first broken link.
"""

from trialsynth.lineage.audit import run_verification, write_status_tables
from trialsynth.lineage.backends import (
    ObjectExistsError,
    WormError,
    check_locked_object,
    protect_bucket,
    put_locked_object,
)
from trialsynth.lineage.keys import FileSigner, KeyRing, LineageSigner, load_signer, trusted_keyring
from trialsynth.lineage.manifest import GENESIS, file_dataset, warehouse_dataset
from trialsynth.lineage.store import ChainStore, LocalLineageStore, S3LineageStore, open_store
from trialsynth.lineage.verify import (
    ChainReport,
    OutputChecker,
    VerificationReport,
    checkpoint_verified,
    verify_chain,
    verify_store,
)

LineageStore = ChainStore  # the name earlier code imports

__all__ = [
    "GENESIS", "ChainReport", "ChainStore", "FileSigner", "KeyRing", "LineageSigner", "LineageStore",
    "LocalLineageStore", "ObjectExistsError", "OutputChecker", "S3LineageStore", "VerificationReport", "WormError",
    "check_locked_object", "checkpoint_verified", "file_dataset", "load_signer", "open_store", "protect_bucket",
    "put_locked_object", "run_verification", "trusted_keyring", "verify_chain", "verify_store", "warehouse_dataset",
    "write_status_tables",
]
