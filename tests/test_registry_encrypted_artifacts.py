"""Model artifacts encrypted at rest (issue 12): saved with the tenant's key, registered by lake URI with
the sha256 of the stored object and of the plaintext, loaded only after decrypting and verifying both;
``keys rewrap`` keeps them valid, tampering, a wrong key, another tenant or a destroyed key fail naming
the object and the key."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select

from orchestration.resources import lake_dataset
from trialsynth.artifacts import lake_store, save_model, stored_location
from trialsynth.cli import main
from trialsynth.hashing import sha256_file
from trialsynth.lineage import OutputChecker
from trialsynth.registry import ArtifactIntegrityError, ModelRegistry, RegistryError, models_table
from trialsynth.security import DecryptionError, KeyDestroyedError, KeyService, read_header
from trialsynth.tenancy import tenant_scope

DATA_SHA = hashlib.sha256(b"training data").hexdigest()
MODEL = {"weights": [0.25, -1.5, 3.0], "columns": ["AGE", "SEX"], "marker": "PLAINTEXT-MODEL-7f3a"}


@pytest.fixture
def keys(settings) -> KeyService:
    return KeyService(settings)


@pytest.fixture
def registry(settings, keys) -> ModelRegistry:
    return ModelRegistry(settings.registry_sqlalchemy_url, keys=keys)


def model_key(tenant: str = "acme", run: str = "run-1") -> str:
    return f"{tenant}/S1/synthesis/models/{run}.pkl"


def model_path(settings, tenant: str = "acme", run: str = "run-1") -> Path:
    """Where the local lake store keeps the object (the embedded default)."""
    return settings.lake_dir / model_key(tenant, run)


def save_and_register(registry: ModelRegistry, keys: KeyService, tenant: str = "acme", model: object = MODEL) -> str:
    stored = save_model(model, model_key(tenant), tenant, keys)
    return registry.register(kind="synthesizer", name=f"{tenant}/S1/copula", trained_by="test",
                             training_data_sha256=DATA_SHA, artifact_path=stored.uri)


def test_saved_model_is_encrypted_and_registered_by_uri_with_both_hashes(settings, keys, registry, tmp_path):
    path = model_path(settings)
    model_id = save_and_register(registry, keys)
    blob = path.read_bytes()
    assert MODEL["marker"].encode() not in blob and blob.startswith(b"TSENC")
    record = registry.get(model_id)
    assert record.artifact_uri == "lake:acme/S1/synthesis/models/run-1.pkl"
    assert record.artifact_plaintext_sha256 == hashlib.sha256(pickle.dumps(MODEL, protocol=pickle.HIGHEST_PROTOCOL)).hexdigest()
    assert record.artifact_sha256 != sha256_file(path)  # it leaves out the key slot, which rewrap changes
    assert (record.artifact_key_id, record.artifact_algorithm) == ("acme/v1", "AES-256-GCM")
    with registry.engine.connect() as conn:
        row = conn.execute(select(models_table)).one()
    assert not any(str(tmp_path) in str(value) for value in row), "the registry row holds a host path"
    assert registry.load_model(model_id) == MODEL
    with pytest.raises(RegistryError, match="holds a dict, not a ModelRegistry"):
        registry.load_model(model_id, expect=ModelRegistry)


def test_rewrap_changes_the_file_but_not_the_registered_hashes(settings, keys, registry):
    path = model_path(settings)
    model_id = save_and_register(registry, keys)
    before = sha256_file(path)
    keys.rotate("acme")
    assert main(["keys", "rewrap", "--tenant", "acme"]) == 0
    assert read_header(path).key_id.version == 2 and sha256_file(path) != before  # the key slot changed
    assert registry.verify_artifact(model_id).id == model_id
    assert registry.load_model(model_id) == MODEL
    assert registry.find_reusable(kind="synthesizer", name="acme/S1/copula", training_data_sha256=DATA_SHA,
                                  parameters={}, seed=None, code_version=registry.get(model_id).code_version).id == model_id


def test_a_flipped_bit_is_refused_naming_the_artifact(settings, keys, registry):
    path = model_path(settings)
    model_id = save_and_register(registry, keys)
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(ArtifactIntegrityError, match=r"lake:acme/S1/synthesis/models/run-1.pkl .*changed after registration"):
        registry.load_model(model_id)


def test_a_replaced_artifact_is_refused_even_when_its_stored_hash_was_updated(settings, keys, registry):
    """Defence in depth: someone who replaces the object (a valid one of the same tenant and path) and
    also rewrites the stored hash in the registry is still caught by the plaintext sha256."""
    model_id = save_and_register(registry, keys)
    forged = save_model({"weights": "backdoor"}, model_key(), "acme", keys)
    with registry.engine.begin() as conn:
        conn.execute(models_table.update().values(artifact_sha256=forged.sha256))
    with pytest.raises(ArtifactIntegrityError, match=r"lake:acme/S1/synthesis/models/run-1.pkl .*\(key acme/v1\) "
                                                     r"decrypts to plaintext sha256 .*replaced after registration"):
        registry.load_model(model_id)


def test_wrong_key_material_fails_naming_the_object_and_the_key(settings, keys, registry):
    path = model_path(settings)
    model_id = save_and_register(registry, keys)
    ring = keys.kms.path
    data = json.loads(ring.read_text())
    data["tenants"]["acme"]["1"]["key"] = base64.b64encode(os.urandom(32)).decode()
    ring.write_text(json.dumps(data))
    with pytest.raises(DecryptionError, match=rf"cannot decrypt {path}: .*acme/v1"):
        registry.load_model(model_id)


def test_another_tenants_artifact_cannot_be_registered_or_loaded_as_ones_own(settings, keys, registry):
    beta = save_model(MODEL, model_key("beta"), "beta", keys)
    with tenant_scope("acme"), pytest.raises(RegistryError, match="in tenant 'beta'.*registers for 'acme'"):
        registry.register(kind="synthesizer", name="acme/S1/copula", trained_by="test",
                          training_data_sha256=DATA_SHA, artifact_path=beta.uri)
    planted = model_path(settings, "acme", "planted")  # beta's ciphertext copied into acme's folder
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_bytes(model_path(settings, "beta").read_bytes())
    with pytest.raises(DecryptionError, match=r"belongs to tenant 'beta' \(key beta/v1\), not 'acme'"):
        registry.register(kind="synthesizer", name="acme/S1/copula", trained_by="test",
                          training_data_sha256=DATA_SHA, artifact_path=planted)
    assert registry.list() == []


def test_crypto_shredding_makes_the_model_unloadable(settings, keys, registry):
    path = model_path(settings)
    model_id = save_and_register(registry, keys)
    ciphertext = path.read_bytes()
    assert main(["keys", "destroy", "--tenant", "acme", "--yes"]) == 0
    with pytest.raises(KeyDestroyedError, match=rf"cannot decrypt {path}: key acme/v1 was destroyed"):
        registry.load_model(model_id)
    assert path.read_bytes() == ciphertext  # the ciphertext is kept


def test_a_registry_from_before_lake_uris_is_upgraded_and_its_plain_artifacts_still_load(settings, tmp_path):
    legacy = tmp_path / "old.pkl"
    legacy.write_bytes(pickle.dumps({"format": "trialsynth.synthesizer/1", "synthesizer": MODEL}))
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:  # the models table as it was before this change
        conn.execute("CREATE TABLE models (id VARCHAR(32) PRIMARY KEY, kind VARCHAR(16) NOT NULL, name VARCHAR(200) "
                     "NOT NULL, trained_by VARCHAR(200) NOT NULL, trained_at DATETIME NOT NULL, training_data_sha256 "
                     "VARCHAR(64) NOT NULL, training_data_version VARCHAR(200), code_version VARCHAR(200), parameters "
                     "JSON NOT NULL, seed BIGINT, metrics JSON, artifact_path TEXT NOT NULL, artifact_sha256 VARCHAR(64) "
                     "NOT NULL, status VARCHAR(16) NOT NULL)")
        conn.execute("INSERT INTO models VALUES ('m1', 'synthesizer', 'acme/S1/ctgan', 'x', '2026-01-01 00:00:00', ?, "
                     "NULL, NULL, '{}', NULL, NULL, ?, ?, 'approved')", (DATA_SHA, str(legacy), sha256_file(legacy)))
    registry = ModelRegistry(f"sqlite:///{db}")
    record = registry.get("m1")
    assert record.artifact_uri == str(legacy) and not record.encrypted
    assert registry.load_model("m1") == MODEL  # BaseSynthesizer.save's wrapper is unwrapped
    legacy.write_bytes(legacy.read_bytes() + b"x")
    with pytest.raises(ArtifactIntegrityError, match="changed after registration"):
        registry.load_model("m1")


def test_lineage_output_check_survives_rewrap_but_not_tampering(settings, keys):
    """What the synthesizer_model asset records in lineage (location and stored sha256 of the artifact) is
    what lineage verification recomputes: unchanged by ``keys rewrap``, changed by an edit."""
    stored = save_model(MODEL, model_key(), "acme", keys)
    location, sha = stored_location(stored.uri, lake_store(settings))
    output = lake_dataset(location, sha)
    checker = OutputChecker()
    assert checker.current_sha256(output, "acme", "S1") == sha == stored.sha256
    keys.rotate("acme")
    assert keys.rewrap("acme").rewrapped
    assert checker.current_sha256(output, "acme", "S1") == sha
    blob = bytearray(model_path(settings).read_bytes())
    blob[-1] ^= 0x01
    model_path(settings).write_bytes(bytes(blob))
    assert checker.current_sha256(output, "acme", "S1") != sha
