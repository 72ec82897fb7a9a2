"""Model registry: provenance, status transitions with audit trail, approval gate, tamper check, CLI."""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Boolean, Enum, create_engine, inspect

from trialsynth import cli
from trialsynth.registry import (
    ArtifactIntegrityError,
    InvalidTransitionError,
    ModelRegistry,
    PrivacyBudgetError,
    PrivacySpend,
    RegistryError,
    RetiredModelError,
    UnapprovedModelError,
    UnknownModelError,
    metadata,
)

DATA_SHA = hashlib.sha256(b"training data").hexdigest()


POSTGRES_URL = os.environ.get("TRIALSYNTH_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def postgres_scratch_url(request) -> str:
    """A scratch database: TRIALSYNTH_TEST_POSTGRES_URL when set, else a new database on the stack's
    private Postgres cluster (started by the `stack` fixture; skipped only when Postgres cannot be
    installed)."""
    if POSTGRES_URL:
        return POSTGRES_URL
    stack = request.getfixturevalue("stack")
    name = f"scratch_registry_{uuid.uuid4().hex[:8]}"
    admin = create_engine(stack.postgres.superuser_url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return stack.postgres.superuser_url(name)


@pytest.fixture(params=["sqlite", "postgres"])
def registry(request, tmp_path, settings) -> ModelRegistry:
    """A fresh registry on SQLite and on Postgres (its registry tables are dropped first); artifacts
    live in the (tmp_path) settings' lake."""
    if request.param == "sqlite":
        return ModelRegistry(f"sqlite:///{tmp_path / 'sub' / 'registry.sqlite'}")
    engine = create_engine(request.getfixturevalue("postgres_scratch_url"))
    metadata.drop_all(engine)
    return ModelRegistry(engine=engine)


def lake_file(settings, name: str, data: bytes) -> Path:
    path = settings.lake_dir / "acme" / "S1" / "models" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def artifact(settings) -> Path:
    return lake_file(settings, "model.pt", b"weights v1")


def register(registry: ModelRegistry, artifact: Path, **overrides) -> str:
    kwargs = {
        "kind": "synthesizer",
        "name": "ctgan-s01",
        "trained_by": "alice",
        "training_data_sha256": DATA_SHA,
        "artifact_path": artifact,
        "parameters": {"epochs": 300, "pac": 10},
        "seed": 7,
        "metrics": {"detection_auc": 0.61},
        "training_data_version": "drop-0003",
        **overrides,
    }
    return registry.register(**kwargs)


def test_register_records_provenance_as_draft(registry, artifact) -> None:
    trained_at = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    model_id = register(registry, artifact, trained_at=trained_at, code_version="abc123")
    record = registry.get(model_id)
    assert record.status == "draft" and record.kind == "synthesizer" and record.name == "ctgan-s01"
    assert record.trained_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)  # stored and returned in UTC
    assert record.artifact_sha256 == hashlib.sha256(b"weights v1").hexdigest()
    assert record.artifact_uri == "lake:acme/S1/models/model.pt"
    assert (record.artifact_key_id, record.artifact_plaintext_sha256) == (None, None)  # a plain file: not encrypted
    assert record.parameters == {"epochs": 300, "pac": 10} and record.metrics == {"detection_auc": 0.61}
    assert (record.seed, record.training_data_sha256, record.code_version) == (7, DATA_SHA, "abc123")
    [registration] = registry.history(model_id)
    assert (registration.from_status, registration.to_status, registration.changed_by) == (
        None,
        "draft",
        "alice",
    )


def test_registry_survives_reopening(tmp_path, artifact) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    model_id = register(ModelRegistry(url), artifact)
    assert ModelRegistry(url).get(model_id).name == "ctgan-s01"


def test_transitions_move_forward_only_and_are_audited(registry, artifact) -> None:
    model_id = register(registry, artifact)
    assert registry.approve(model_id, by="bob", why="evidence pack r1 passes").status == "approved"
    with pytest.raises(InvalidTransitionError, match="approved; it can move to retired, not approved"):
        registry.approve(model_id, by="bob", why="again")
    assert registry.retire(model_id, by="carol", why="superseded").status == "retired"
    with pytest.raises(InvalidTransitionError, match="retired; it can move to nothing"):
        registry.approve(model_id, by="bob", why="back")
    trail = [(c.from_status, c.to_status, c.changed_by, c.why) for c in registry.history(model_id)]
    assert trail == [
        (None, "draft", "alice", "registered"),
        ("draft", "approved", "bob", "evidence pack r1 passes"),
        ("approved", "retired", "carol", "superseded"),
    ]


def test_a_draft_can_be_retired_directly(registry, artifact) -> None:
    model_id = register(registry, artifact)
    assert registry.retire(model_id, by="bob", why="failed evidence").status == "retired"


def test_status_changes_need_who_and_why(registry, artifact) -> None:
    model_id = register(registry, artifact)
    with pytest.raises(RegistryError, match="why must be a non-empty string"):
        registry.approve(model_id, by="bob", why=" ")
    assert registry.get(model_id).status == "draft"


def test_only_approved_models_are_resolved_unless_the_caller_opts_out(registry, artifact) -> None:
    model_id = register(registry, artifact)
    with pytest.raises(UnapprovedModelError, match="draft, not approved"):
        registry.resolve_for_generation(model_id)
    with pytest.raises(UnapprovedModelError, match="no approved model named 'ctgan-s01'"):
        registry.resolve_for_generation("ctgan-s01")
    assert registry.resolve_for_generation(model_id, allow_unapproved=True).id == model_id
    assert registry.resolve_for_generation("ctgan-s01", allow_unapproved=True).id == model_id
    registry.approve(model_id, by="bob", why="ok")
    assert registry.resolve_for_generation(model_id).id == model_id
    assert registry.resolve_for_generation("ctgan-s01").id == model_id
    with pytest.raises(UnknownModelError, match="no model with id or name 'nope'"):
        registry.resolve_for_generation("nope")


def test_name_resolves_to_the_latest_approved_model(registry, artifact) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    old, new, newest_draft = (
        register(registry, artifact, trained_at=start + timedelta(days=d)) for d in (0, 1, 2)
    )
    for model_id in (old, new):
        registry.approve(model_id, by="bob", why="ok")
    assert registry.latest("ctgan-s01").id == new
    assert registry.latest("ctgan-s01", status=None).id == newest_draft
    assert registry.resolve_for_generation("ctgan-s01").id == new
    registry.retire(new, by="bob", why="bug found")
    assert registry.resolve_for_generation("ctgan-s01").id == old


def test_a_tampered_artifact_is_refused(registry, artifact) -> None:
    model_id = register(registry, artifact)
    registry.approve(model_id, by="bob", why="ok")
    artifact.write_bytes(b"weights v1 + backdoor")
    with pytest.raises(ArtifactIntegrityError, match="changed after registration"):
        registry.resolve_for_generation(model_id)
    with pytest.raises(ArtifactIntegrityError):
        registry.resolve_for_generation(model_id, allow_unapproved=True)  # the opt-out covers approval only
    artifact.unlink()
    with pytest.raises(FileNotFoundError):
        registry.verify_artifact(model_id)


def test_a_tampered_draft_cannot_be_approved(registry, artifact) -> None:
    model_id = register(registry, artifact)
    artifact.write_bytes(b"other weights")
    with pytest.raises(ArtifactIntegrityError):
        registry.approve(model_id, by="bob", why="ok")
    assert registry.get(model_id).status == "draft"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "classifier"}, "kind must be one of"),
        ({"name": ""}, "name must be a non-empty string"),
        ({"training_data_sha256": "abc"}, "training_data_sha256 must be 64"),
        ({"seed": 1.5}, "seed must be an int"),
        ({"parameters": {"f": object()}}, "parameters must be JSON-serializable"),
        ({"metrics": {"auc": float("nan")}}, "metrics must be JSON-serializable"),
        ({"trained_at": datetime(2024, 1, 1)}, "timezone-aware"),
        ({"expected_artifact_sha256": "0" * 64}, "not the expected"),
    ],
)
def test_bad_registrations_raise_clear_errors(registry, artifact, overrides: dict, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        register(registry, artifact, **overrides)
    assert registry.list() == []


def test_missing_artifact_is_refused_at_registration(registry, settings) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        register(registry, settings.lake_dir / "acme" / "missing.pt")


def test_an_artifact_outside_the_lake_is_refused(registry, tmp_path) -> None:
    outside = tmp_path / "model.pt"
    outside.write_bytes(b"weights")
    with pytest.raises(RegistryError, match="nor a path under the lake .* stores artifacts by lake URI"):
        register(registry, outside)
    assert registry.list() == []


def test_list_filters(registry, artifact) -> None:
    synth = register(registry, artifact)
    imputer = register(registry, artifact, kind="imputer", name="mice")
    registry.approve(imputer, by="bob", why="ok")
    assert [r.id for r in registry.list()] == [synth, imputer]
    assert [r.id for r in registry.list(kind="imputer")] == [imputer]
    assert [r.id for r in registry.list(status="draft")] == [synth]
    with pytest.raises(RegistryError, match="status must be one of"):
        registry.list(status="live")


def test_schema_uses_portable_types_only() -> None:
    # Enum/Boolean would create dialect-specific types or constraints; the schema must move to Postgres.
    for table in metadata.tables.values():
        for column in table.columns:
            assert not isinstance(column.type, Enum | Boolean), column


def test_tables_and_columns(registry) -> None:
    inspector = inspect(registry.engine)
    assert set(inspector.get_table_names()) >= {"models", "status_changes"}
    columns = {c["name"] for c in inspector.get_columns("models")}
    assert {"training_data_sha256", "artifact_sha256", "parameters", "metrics", "status", "seed"} <= columns


def test_cli_list_approve_retire(settings, artifact, capsys) -> None:
    registry = ModelRegistry()  # the (tmp_path) settings' default URL, as the CLI uses
    model_id = register(registry, artifact)
    assert cli.main(["registry", "list"]) == 0
    assert model_id in capsys.readouterr().out
    assert cli.main(["registry", "approve", model_id, "--by", "bob", "--why", "evidence ok"]) == 0
    assert "is now approved" in capsys.readouterr().out
    assert cli.main(["registry", "list", "--status", "approved"]) == 0
    assert model_id in capsys.readouterr().out
    assert cli.main(["registry", "approve", model_id, "--by", "bob", "--why", "again"]) == 2
    assert "it can move to retired" in capsys.readouterr().err
    assert cli.main(["registry", "retire", model_id, "--by", "carol", "--why", "old"]) == 0
    assert registry.get(model_id).status == "retired"
    assert cli.main(["registry", "retire", "nope", "--by", "carol", "--why", "old"]) == 2
    assert "no model with id 'nope'" in capsys.readouterr().err


def test_find_reusable_matches_data_parameters_seed_and_code(registry, artifact) -> None:
    identity = {"kind": "synthesizer", "name": "ctgan-s01", "training_data_sha256": DATA_SHA,
                "parameters": {"epochs": 300, "pac": 10}, "seed": 7, "code_version": "v1"}
    assert registry.find_reusable(**identity) is None
    model_id = register(registry, artifact, code_version="v1")
    assert registry.find_reusable(**identity).id == model_id
    assert registry.find_reusable(**{**identity, "parameters": {"pac": 10, "epochs": 300}}).id == model_id
    for change in ({"parameters": {"epochs": 301, "pac": 10}}, {"seed": 8}, {"code_version": "v2"},
                   {"training_data_sha256": hashlib.sha256(b"other data").hexdigest()}, {"name": "ctgan-s02"}):
        assert registry.find_reusable(**{**identity, **change}) is None, change


def test_find_reusable_prefers_approved_skips_broken_artifacts_and_refuses_retired(registry, settings) -> None:
    identity = {"kind": "synthesizer", "name": "ctgan-s01", "training_data_sha256": DATA_SHA,
                "parameters": {"epochs": 300, "pac": 10}, "seed": 7, "code_version": "v1"}
    start = datetime(2024, 1, 1, tzinfo=UTC)
    paths = [lake_file(settings, f"m{i}.pt", b"weights %d" % i) for i in range(3)]
    approved, draft, newest = (register(registry, p, code_version="v1", trained_at=start + timedelta(days=i))
                               for i, p in enumerate(paths))
    registry.approve(approved, by="bob", why="ok")
    assert registry.find_reusable(**identity).id == approved
    registry.retire(approved, by="bob", why="bias found")
    assert registry.find_reusable(**identity).id == newest
    paths[2].unlink()  # a match whose artifact is gone is not reused
    assert registry.find_reusable(**identity).id == draft
    registry.retire(draft, by="carol", why="leaks rare categories")
    registry.retire(newest, by="carol", why="leaks rare categories")
    with pytest.raises(RetiredModelError, match=f"model {newest} .*retired by carol \\(leaks rare categories\\)"):
        registry.find_reusable(**identity)


def test_privacy_spend_is_recorded_per_data_version_and_the_cap_refuses(registry, artifact) -> None:
    spend = PrivacySpend(study="acme/ACME-001", mechanism="mst", epsilon=1.0, delta=1e-6,
                         cap_epsilon=2.5, cap_delta=1e-5)
    first = register(registry, artifact, privacy=spend)
    assert registry.privacy_of(first) == PrivacySpend(study="acme/ACME-001", mechanism="mst", epsilon=1.0, delta=1e-6)
    assert registry.privacy_of(register(registry, artifact)) is None  # no guarantee
    assert registry.check_privacy_budget(spend, DATA_SHA) == pytest.approx((0.5, 8e-6))
    register(registry, artifact, privacy=spend)
    assert registry.privacy_spent("acme/ACME-001", DATA_SHA) == pytest.approx((2.0, 2e-6, 2))
    models_before = registry.list()
    message = (r"would exceed the study's privacy cap \(epsilon=2.5, delta=1e-05\): spent epsilon=2, delta=2e-06 by "
               r"2 model\(s\); remaining epsilon=0.5, delta=8e-06")
    with pytest.raises(PrivacyBudgetError, match=message):
        registry.check_privacy_budget(spend, DATA_SHA)
    with pytest.raises(PrivacyBudgetError, match=message):
        register(registry, artifact, privacy=spend)
    assert registry.list() == models_before  # nothing recorded
    other_version = hashlib.sha256(b"drop 2").hexdigest()
    assert registry.check_privacy_budget(spend, other_version) == pytest.approx((1.5, 9e-6))
    with pytest.raises(RegistryError, match="privacy epsilon must be a positive finite number"):
        PrivacySpend(study="s", mechanism="mst", epsilon=0.0, delta=1e-6)


def test_training_tables_drawn_from_one_data_version_share_its_account(registry, artifact) -> None:
    """Two seeds split the same study data into two training tables: one account (the data version)."""
    version = hashlib.sha256(b"all subjects of drop 1").hexdigest()
    spend = PrivacySpend(study="acme/ACME-001", mechanism="mst", epsilon=1.0, delta=1e-6, cap_epsilon=1.5,
                         cap_delta=1e-5, data_version=version)
    register(registry, artifact, privacy=spend)  # on DATA_SHA, this seed's training table
    assert registry.latest_data_version("acme/ACME-001") == version
    assert registry.privacy_spent("acme/ACME-001", version) == pytest.approx((1.0, 1e-6, 1))
    other_split = hashlib.sha256(b"seed 4's training table").hexdigest()
    with pytest.raises(PrivacyBudgetError, match="spent epsilon=1, delta=1e-06 by 1 model"):
        registry.check_privacy_budget(spend, other_split)
    with pytest.raises(PrivacyBudgetError):
        register(registry, artifact, privacy=spend, training_data_sha256=other_split)
    with pytest.raises(RegistryError, match="data_version must be 64 lowercase hex"):
        PrivacySpend(study="s", mechanism="mst", epsilon=1.0, delta=1e-6, data_version="drop-1")
