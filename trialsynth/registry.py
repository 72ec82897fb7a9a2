"""Model registry: every trained synthesizer and imputer, its provenance and its approval status.

SQLAlchemy Core on any SQLAlchemy URL (SQLite file in the lake by default, Postgres in the
scale-out stack; only portable types are used). Two tables for models:

- ``models``: one row per trained model (who, when, training data sha256 and version, code
  version, parameters, seed, metrics, artifact, status). The artifact is stored by its lake URI
  (``lake:<tenant>/<study>/...``, never a host path) with :func:`trialsynth.security.envelope.content_sha256`
  of the stored object and, for an encrypted artifact (:func:`trialsynth.artifacts.save_model`), the
  sha256 of its plaintext, the key id that wrapped it at registration and the algorithm.
- ``status_changes``: the audit trail, one row per status change (including registration). The
  columns are ``from_status``, ``to_status``, ``changed_by``, ``why``, ``changed_at`` rather than
  ``from``/``to``/``by``/``at``, which are reserved words in SQL and would need quoting in every
  hand-written query.

A third table, ``privacy_spend``, records the (epsilon, delta) each differentially private model
spent on its study's data version (training data sha256) and its mechanism; registering a DP model
whose spend would take the data version past its cap is refused (:class:`PrivacyBudgetError`, naming
the spent and the remaining budget). A model trained on the same data with the same parameters, seed
and code is found with :meth:`ModelRegistry.find_reusable` instead of being trained (and spending)
again.

Status moves only forward: ``draft -> approved -> retired`` or ``draft -> retired``. Only approved
models are handed to the generate step (:meth:`ModelRegistry.resolve_for_generation`) unless the
caller opts out explicitly, and an artifact whose sha256 no longer matches the registered one is
refused. :meth:`ModelRegistry.load_model` decrypts an encrypted artifact and checks both hashes;
``keys rewrap`` changes neither.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from trialsynth.artifacts import (
    LAKE_SCHEME,
    decrypt_object,
    key_tenant,
    lake_key,
    lake_store,
)
from trialsynth.security import KeyService, read_header
from trialsynth.security.envelope import MAGIC, content_sha256
from trialsynth.storage import LakeStore
from trialsynth.tenancy.context import current_tenant
from trialsynth.tenancy.postgres import install_tenant_guard

log = logging.getLogger(__name__)

Kind = Literal["synthesizer", "imputer"]
Status = Literal["draft", "approved", "retired"]
KINDS: tuple[Kind, ...] = ("synthesizer", "imputer")
STATUSES: tuple[Status, ...] = ("draft", "approved", "retired")
TRANSITIONS: dict[str, tuple[Status, ...]] = {
    "draft": ("approved", "retired"),
    "approved": ("retired",),
    "retired": (),
}
"""Allowed status changes: from -> the statuses it may move to."""

_SHA256 = re.compile(r"^[0-9a-f]{64}$")

metadata = MetaData()

models_table = Table(
    "models",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("trained_by", String(200), nullable=False),
    Column("trained_at", DateTime(timezone=True), nullable=False),
    Column("training_data_sha256", String(64), nullable=False),
    Column("training_data_version", String(200)),
    Column("code_version", String(200)),
    Column("parameters", JSON, nullable=False),
    Column("seed", BigInteger),
    Column("metrics", JSON),
    Column("artifact_uri", Text, nullable=False),  # lake:<tenant>/<study>/... (rows from before: a host path)
    Column("artifact_sha256", String(64), nullable=False),  # content_sha256: an envelope without its key slot
    Column("artifact_plaintext_sha256", String(64)),  # None: the artifact is not encrypted
    Column("artifact_key_id", String(200)),  # "<tenant>/v<N>" that wrapped its data key at registration
    Column("artifact_algorithm", String(32)),
    Column("status", String(16), nullable=False),
    CheckConstraint("kind IN ('synthesizer', 'imputer')", name="ck_models_kind"),
    CheckConstraint("status IN ('draft', 'approved', 'retired')", name="ck_models_status"),
    Index("ix_models_name_status", "name", "status"),
)

status_changes_table = Table(
    "status_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", String(32), ForeignKey("models.id"), nullable=False, index=True),
    Column("from_status", String(16)),
    Column("to_status", String(16), nullable=False),
    Column("changed_by", String(200), nullable=False),
    Column("why", Text, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)


privacy_spend_table = Table(
    "privacy_spend",
    metadata,
    Column("model_id", String(32), ForeignKey("models.id"), primary_key=True),
    Column("study", String(200), nullable=False),
    Column("training_data_sha256", String(64), nullable=False),
    Column("mechanism", String(64), nullable=False),
    Column("epsilon", Float, nullable=False),
    Column("delta", Float, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Index("ix_privacy_spend_scope", "study", "training_data_sha256"),
)
"""The differential-privacy budget each DP model spent on one study data version (its training data)."""


class RegistryError(ValueError):
    """A registry request that cannot be honoured (bad input, unknown model, bad transition)."""


class UnknownModelError(RegistryError):
    """No model with that id (or name) is registered."""


class InvalidTransitionError(RegistryError):
    """The requested status change is not allowed from the model's current status."""


class ArtifactIntegrityError(RegistryError):
    """The stored artifact or its plaintext does not have the registered sha256 (changed or tampered with)."""


class UnapprovedModelError(PermissionError):
    """The model is not approved and the caller did not opt out with ``allow_unapproved=True``."""


class RetiredModelError(RegistryError):
    """Training again would only reproduce a model that a reviewer retired."""


class PrivacyBudgetError(RegistryError):
    """Training would spend more privacy budget on a study data version than its cap allows."""


@dataclass(frozen=True)
class PrivacySpend:
    """The (epsilon, delta) a DP model spent on ``study``'s data version.

    ``data_version``: sha256 of the study data every training split is drawn from (all subjects, before
    the seeded train/holdout split), so that another seed or holdout share, which gives another training
    table of largely the same subjects, spends from the same account. None: the training table's sha256
    (for callers without a split).

    Spends on one data version add up (basic composition) and must stay within the study's cap
    (``cap_epsilon``, ``cap_delta``, from its config; not stored, checked at registration). A retired
    model's spend still counts: what it released cannot be recalled. New study data (another drop)
    starts its own account, although subjects it shares with earlier data were already spent on: keep
    the cap low when drops overlap.
    """

    study: str
    mechanism: str
    epsilon: float
    delta: float
    cap_epsilon: float | None = None
    cap_delta: float | None = None
    data_version: str | None = None

    def __post_init__(self) -> None:
        _require_text("study", self.study)
        if self.data_version is not None and not _SHA256.match(self.data_version):
            raise RegistryError(f"privacy data_version must be 64 lowercase hex digits, got {self.data_version!r}")
        _require_text("mechanism", self.mechanism)
        for name in ("epsilon", "delta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
                raise RegistryError(f"privacy {name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class ModelRecord:
    """One registered model (a row of ``models``); times are timezone-aware UTC."""

    id: str
    kind: Kind
    name: str
    trained_by: str
    trained_at: datetime
    training_data_sha256: str
    training_data_version: str | None
    code_version: str | None
    parameters: dict[str, Any]
    seed: int | None
    metrics: dict[str, Any] | None
    artifact_uri: str
    artifact_sha256: str
    status: Status
    artifact_plaintext_sha256: str | None = None
    artifact_key_id: str | None = None
    artifact_algorithm: str | None = None

    @property
    def encrypted(self) -> bool:
        return self.artifact_key_id is not None


@dataclass(frozen=True)
class StatusChange:
    """One entry of a model's audit trail (``from_status`` is None for the registration)."""

    model_id: str
    from_status: Status | None
    to_status: Status
    changed_by: str
    why: str
    changed_at: datetime


_ARTIFACT_COLUMNS = ("artifact_plaintext_sha256", "artifact_key_id", "artifact_algorithm")


def upgrade_schema(engine: Engine) -> list[str]:
    """Bring a ``models`` table from before lake URIs and encrypted artifacts to this schema: rename
    ``artifact_path`` to ``artifact_uri`` (old rows keep their host path, still readable) and add the
    artifact encryption columns. Idempotent; returns the statements run. Needs the table's owner (on
    the stack's Postgres, the administrator that runs ``make stack-up``)."""
    if not inspect(engine).has_table("models"):  # a new database: create_all makes the current schema
        return []
    columns = {c["name"] for c in inspect(engine).get_columns("models")}
    statements = []
    if "artifact_uri" not in columns and "artifact_path" in columns:
        statements.append("ALTER TABLE models RENAME COLUMN artifact_path TO artifact_uri")
    for name in _ARTIFACT_COLUMNS:
        if name not in columns:
            statements.append(f"ALTER TABLE models ADD COLUMN {name} "
                              f"{models_table.c[name].type.compile(dialect=engine.dialect)}")
    if statements:
        try:
            with engine.begin() as conn:
                for statement in statements:
                    conn.exec_driver_sql(statement)
        except SQLAlchemyError as exc:
            raise RegistryError(
                f"the registry's models table predates artifact URIs and encryption and cannot be upgraded by this "
                f"database user ({exc.__class__.__name__}): run trialsynth.registry.upgrade_schema(engine) as the "
                "table owner (make stack-up does)") from exc
        log.info("registry schema upgraded: %s", "; ".join(statements))
    return statements


def _utc(value: datetime) -> datetime:
    # SQLite has no time zone type and hands back naive datetimes; they were stored as UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def _default_code_version() -> str | None:
    try:
        return f"trialsynth {version('trialsynth')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return None


def _require_text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RegistryError(f"{name} must be a non-empty string, got {value!r}")
    return value.strip()


def _require_json(name: str, value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{name} must be JSON-serializable (finite numbers, str keys): {exc}") from None
    return value


class ModelRegistry:
    """Registry on the SQLAlchemy database at ``url`` (tables created when missing).

    ``url`` defaults to ``get_settings().registry_sqlalchemy_url`` (a SQLite file in the lake).
    On Postgres every transaction runs for the tenant of the current
    :func:`trialsynth.tenancy.tenant_scope` (row-level security, docs/security.md): outside a scope
    the registry sees no model and cannot register one. Artifacts are read from the lake store of
    ``keys.settings`` (default: the settings'), and decrypted with its KMS.
    """

    def __init__(self, url: str | None = None, *, engine: Engine | None = None,
                 keys: KeyService | None = None) -> None:
        self._key_service = keys  # created on first use: the settings' KMS
        self._lake_store: LakeStore | None = None  # the settings' lake store, opened on first use
        if engine is None:
            if url is None:
                from trialsynth.settings import get_settings

                url = get_settings().registry_sqlalchemy_url
            parsed = make_url(url)
            if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url)
        self.engine = install_tenant_guard(engine)  # a no-op on SQLite
        metadata.create_all(self.engine)
        upgrade_schema(self.engine)

    # ----------------------------------------------------------------------------- writing
    def register(
        self,
        *,
        kind: Kind,
        name: str,
        trained_by: str,
        training_data_sha256: str,
        artifact_path: str | Path,
        parameters: dict[str, Any] | None = None,
        seed: int | None = None,
        metrics: dict[str, Any] | None = None,
        training_data_version: str | None = None,
        code_version: str | None = None,
        trained_at: datetime | None = None,
        expected_artifact_sha256: str | None = None,
        privacy: PrivacySpend | None = None,
    ) -> str:
        """Record a trained model as ``draft``; returns its id (32 hex characters).

        ``privacy`` records the differential-privacy budget a DP model spent on its training data;
        PrivacyBudgetError (nothing recorded) when it would exceed the spend's cap (see
        :meth:`check_privacy_budget`). None: the model has no privacy guarantee.

        ``artifact_path``: the artifact's lake URI (``StoredObject.uri`` of
        :func:`trialsynth.artifacts.save_model`) or its path under the local lake folder; it must exist
        in the lake store. Its lake URI is stored, never a host path, with its
        :func:`trialsynth.security.envelope.content_sha256` (it must equal ``expected_artifact_sha256`` when that
        is given). An encrypted artifact is decrypted once here: the sha256 of its plaintext, the key id
        that wrapped it and the algorithm are stored too.
        ``trained_at`` (timezone-aware, default now) is stored in UTC; ``code_version`` defaults to
        the installed trialsynth version.
        """
        if kind not in KINDS:
            raise RegistryError(f"kind must be one of {KINDS}, got {kind!r}")
        name, trained_by = _require_text("name", name), _require_text("trained_by", trained_by)
        if not isinstance(training_data_sha256, str) or not _SHA256.match(training_data_sha256):
            raise RegistryError(
                f"training_data_sha256 must be 64 lowercase hex digits, got {training_data_sha256!r}"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise RegistryError(f"seed must be an int or None, got {seed!r}")
        if trained_at is not None and trained_at.tzinfo is None:
            raise RegistryError("trained_at must be timezone-aware (UTC)")
        artifact = self._describe_artifact(artifact_path)
        digest = artifact["artifact_sha256"]
        if expected_artifact_sha256 is not None and expected_artifact_sha256 != digest:
            raise ArtifactIntegrityError(
                f"artifact {artifact_path} has sha256 {digest}, not the expected {expected_artifact_sha256}"
            )
        model_id = uuid.uuid4().hex
        row = {
            "id": model_id,
            "kind": kind,
            "name": name,
            "trained_by": trained_by,
            "trained_at": _utc(trained_at or _now()),
            "training_data_sha256": training_data_sha256,
            "training_data_version": training_data_version,
            "code_version": code_version if code_version is not None else _default_code_version(),
            "parameters": _require_json("parameters", parameters or {}),
            "seed": seed,
            "metrics": _require_json("metrics", metrics),
            **artifact,
            "status": "draft",
        }
        with self.engine.begin() as conn:
            if privacy is not None:  # the cap is checked again inside the transaction that spends
                self._check_budget(conn, privacy, privacy.data_version or training_data_sha256)
            conn.execute(models_table.insert().values(**row))
            conn.execute(
                status_changes_table.insert().values(
                    model_id=model_id,
                    from_status=None,
                    to_status="draft",
                    changed_by=trained_by,
                    why="registered",
                    changed_at=_now(),
                )
            )
            if privacy is not None:
                conn.execute(privacy_spend_table.insert().values(
                    model_id=model_id, study=privacy.study,
                    training_data_sha256=privacy.data_version or training_data_sha256,  # the account's data version
                    mechanism=privacy.mechanism, epsilon=float(privacy.epsilon), delta=float(privacy.delta),
                    recorded_at=_now(),
                ))
        log.info("registered %s %s as %s (draft)", kind, name, model_id)
        return model_id

    def _keys(self) -> KeyService:
        if self._key_service is None:
            self._key_service = KeyService()
        return self._key_service

    def _store(self) -> LakeStore:
        if self._lake_store is None:
            self._lake_store = lake_store(self._keys().settings)
        return self._lake_store

    def _read_stored(self, uri: str) -> tuple[bytes, str]:
        """(the stored bytes, where they are) of an artifact URI; a row from before lake URIs names a file."""
        if not uri.startswith(LAKE_SCHEME):
            path = Path(uri)
            if not path.is_file():
                raise FileNotFoundError(f"artifact {uri} does not exist")
            return path.read_bytes(), uri
        key = lake_key(uri)
        key = self._store().guard(key_tenant(key), key)  # on the local store: symlinks followed, too
        return self._store().read_bytes(key), self._store().uri(key)

    def _describe_artifact(self, location: str | Path) -> dict[str, Any]:
        """The ``artifact_*`` columns of the artifact at ``location`` (decrypting it when it is encrypted)."""
        try:
            key = lake_key(location, self._keys().settings)
        except ValueError as exc:
            raise RegistryError(f"artifact_path: {exc}; the registry stores artifacts by lake URI") from None
        uri, tenant, scope = LAKE_SCHEME + key, key_tenant(key), current_tenant()
        if scope is not None and tenant != scope:
            raise RegistryError(f"artifact {uri} is in tenant {tenant!r}'s lake, but this registers for {scope!r}")
        blob, where = self._read_stored(uri)
        row = {"artifact_uri": uri, "artifact_sha256": content_sha256(blob)}
        if blob.startswith(MAGIC):
            plaintext = decrypt_object(blob, key, tenant, self._keys(), where)  # errors name the object and the key
            header = read_header(blob, where)
            row.update(artifact_plaintext_sha256=hashlib.sha256(plaintext).hexdigest(),
                       artifact_key_id=str(header.key_id), artifact_algorithm=header.algorithm)
        return row

    def approve(self, model_id: str, by: str, why: str) -> ModelRecord:
        """Move a draft model to ``approved`` (its artifact must still match its sha256)."""
        self.verify_artifact(model_id)
        return self._transition(model_id, "approved", by, why)

    def retire(self, model_id: str, by: str, why: str) -> ModelRecord:
        """Move a draft or approved model to ``retired`` (final)."""
        return self._transition(model_id, "retired", by, why)

    def _transition(self, model_id: str, to: Status, by: str, why: str) -> ModelRecord:
        by, why = _require_text("by", by), _require_text("why", why)
        current = self.get(model_id).status
        if to not in TRANSITIONS[current]:
            allowed = ", ".join(TRANSITIONS[current]) or "nothing (final)"
            raise InvalidTransitionError(f"model {model_id} is {current}; it can move to {allowed}, not {to}")
        with self.engine.begin() as conn:
            # Compare-and-set on the old status, so two concurrent changes cannot both succeed.
            changed = conn.execute(
                update(models_table)
                .where(models_table.c.id == model_id, models_table.c.status == current)
                .values(status=to)
            ).rowcount
            if changed != 1:
                raise InvalidTransitionError(f"model {model_id} changed status concurrently; retry")
            conn.execute(
                status_changes_table.insert().values(
                    model_id=model_id,
                    from_status=current,
                    to_status=to,
                    changed_by=by,
                    why=why,
                    changed_at=_now(),
                )
            )
        log.info("model %s: %s -> %s by %s (%s)", model_id, current, to, by, why)
        return self.get(model_id)

    # ----------------------------------------------------------------------------- reading
    @staticmethod
    def _record(row: Any) -> ModelRecord:
        values = dict(row._mapping)
        values["trained_at"] = _utc(values["trained_at"])
        return ModelRecord(**values)

    def get(self, model_id: str) -> ModelRecord:
        """The model with id ``model_id`` (UnknownModelError if none)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(models_table).where(models_table.c.id == model_id)).first()
        if row is None:
            raise UnknownModelError(f"no model with id {model_id!r} in the registry")
        return self._record(row)

    def list(
        self, kind: Kind | None = None, status: Status | None = None, name: str | None = None
    ) -> list[ModelRecord]:
        """Models, oldest first, optionally filtered by kind, status and name."""
        if kind is not None and kind not in KINDS:
            raise RegistryError(f"kind must be one of {KINDS}, got {kind!r}")
        if status is not None and status not in STATUSES:
            raise RegistryError(f"status must be one of {STATUSES}, got {status!r}")
        query = select(models_table).order_by(models_table.c.trained_at, models_table.c.id)
        for column, value in (("kind", kind), ("status", status), ("name", name)):
            if value is not None:
                query = query.where(models_table.c[column] == value)
        with self.engine.connect() as conn:
            return [self._record(row) for row in conn.execute(query)]

    def latest(self, name: str, status: Status | None = "approved") -> ModelRecord:
        """The most recently trained model called ``name`` with ``status`` (None: any status)."""
        found = self.list(name=name, status=status)
        if not found:
            raise UnknownModelError(f"no {status or 'registered'} model named {name!r} in the registry")
        return found[-1]

    def history(self, model_id: str) -> list[StatusChange]:
        """The model's status changes, oldest first (registration included)."""
        self.get(model_id)
        query = (
            select(status_changes_table)
            .where(status_changes_table.c.model_id == model_id)
            .order_by(status_changes_table.c.id)
        )
        with self.engine.connect() as conn:
            rows = [dict(row._mapping) for row in conn.execute(query)]
        return [
            StatusChange(
                model_id=r["model_id"],
                from_status=r["from_status"],
                to_status=r["to_status"],
                changed_by=r["changed_by"],
                why=r["why"],
                changed_at=_utc(r["changed_at"]),
            )
            for r in rows
        ]

    def latest_data_version(self, study: str) -> str | None:
        """The data version the study's most recent DP spend was accounted on (None: no spend yet)."""
        t = privacy_spend_table
        with self.engine.connect() as conn:
            return conn.execute(select(t.c.training_data_sha256).where(t.c.study == study)
                                .order_by(t.c.recorded_at.desc()).limit(1)).scalar()

    def privacy_spent(self, study: str, training_data_sha256: str) -> tuple[float, float, int]:
        """(epsilon, delta, number of models) spent so far on a study data version."""
        with self.engine.connect() as conn:
            return self._spent(conn, study, training_data_sha256)

    @staticmethod
    def _spent(conn: Any, study: str, training_data_sha256: str) -> tuple[float, float, int]:
        t = privacy_spend_table
        row = conn.execute(
            select(func.coalesce(func.sum(t.c.epsilon), 0.0), func.coalesce(func.sum(t.c.delta), 0.0), func.count())
            .where(t.c.study == study, t.c.training_data_sha256 == training_data_sha256)
        ).one()
        return float(row[0]), float(row[1]), int(row[2])

    def privacy_of(self, model_id: str) -> PrivacySpend | None:
        """The budget the model spent, or None for a model without a privacy guarantee."""
        self.get(model_id)
        with self.engine.connect() as conn:
            row = conn.execute(select(privacy_spend_table).where(privacy_spend_table.c.model_id == model_id)).first()
        if row is None:
            return None
        return PrivacySpend(study=row.study, mechanism=row.mechanism, epsilon=row.epsilon, delta=row.delta)

    def check_privacy_budget(self, spend: PrivacySpend, training_data_sha256: str) -> tuple[float, float]:
        """The (epsilon, delta) left on the data version after ``spend``; PrivacyBudgetError, naming
        what was spent and what remains, when the spend would exceed its cap. Call it before training
        (:meth:`register` checks again)."""
        with self.engine.connect() as conn:
            return self._check_budget(conn, spend, spend.data_version or training_data_sha256)

    @staticmethod
    def _check_budget(conn: Any, spend: PrivacySpend, training_data_sha256: str) -> tuple[float, float]:
        cap_epsilon = spend.epsilon if spend.cap_epsilon is None else spend.cap_epsilon
        cap_delta = spend.delta if spend.cap_delta is None else spend.cap_delta
        epsilon, delta, models = ModelRegistry._spent(conn, spend.study, training_data_sha256)
        left = (cap_epsilon - epsilon - spend.epsilon, cap_delta - delta - spend.delta)
        if min(left) < -1e-12:
            raise PrivacyBudgetError(
                f"training {spend.mechanism} at epsilon={spend.epsilon:g}, delta={spend.delta:g} on {spend.study} "
                f"(data version {training_data_sha256[:12]}) would exceed the study's privacy cap "
                f"(epsilon={cap_epsilon:g}, delta={cap_delta:g}): spent epsilon={epsilon:g}, delta={delta:g} by "
                f"{models} model(s); remaining epsilon={max(cap_epsilon - epsilon, 0):g}, "
                f"delta={max(cap_delta - delta, 0):g}. Reuse a trained model, lower the budget, or raise "
                "synthesis.privacy.cap in the study config"
            )
        return max(left[0], 0.0), max(left[1], 0.0)

    def find_reusable(
        self,
        *,
        kind: Kind,
        name: str,
        training_data_sha256: str,
        parameters: dict[str, Any],
        seed: int | None,
        code_version: str | None,
    ) -> ModelRecord | None:
        """The registered model that training again would only duplicate, or None.

        A match has the same kind, name, training data sha256, parameters (compared as JSON), seed
        and code version, and an intact artifact (a match whose artifact is gone or changed is
        skipped with a warning). The latest approved match wins, else the latest draft. When every
        match is retired, RetiredModelError says who retired it and why: retraining would give the
        rejected model again, so the data, parameters or seed must change first.
        """
        wanted = json.dumps(_require_json("parameters", parameters), sort_keys=True)
        query = select(models_table).where(
            models_table.c.kind == kind,
            models_table.c.name == name,
            models_table.c.training_data_sha256 == training_data_sha256,
        ).order_by(models_table.c.trained_at, models_table.c.id)
        with self.engine.connect() as conn:
            found = [self._record(row) for row in conn.execute(query)]
        same = [
            r for r in found
            if (r.seed, r.code_version) == (seed, code_version)
            and json.dumps(r.parameters, sort_keys=True) == wanted
        ]
        for status in ("approved", "draft"):
            for record in reversed([r for r in same if r.status == status]):
                try:
                    self.verify_artifact(record.id)
                except (FileNotFoundError, ArtifactIntegrityError) as exc:
                    log.warning("not reusing model %s: %s", record.id, exc)
                    continue
                return record
        retired = [r for r in same if r.status == "retired"]
        if retired:
            change = self.history(retired[-1].id)[-1]
            raise RetiredModelError(
                f"model {retired[-1].id} ({name}) was trained on this data with these parameters, seed and "
                f"code and was retired by {change.changed_by} ({change.why}); training again would reproduce "
                "it: change the synthesis parameters or seed in the study config"
            )
        return None

    def verify_artifact(self, model_id: str) -> ModelRecord:
        """The model's record after checking its stored artifact's sha256 against the registered one
        (no key needed; ``keys rewrap`` does not change it).

        Raises FileNotFoundError when the artifact is gone and ArtifactIntegrityError when it changed.
        """
        return self._verified(self.get(model_id))[0]

    def _verified(self, record: ModelRecord) -> tuple[ModelRecord, bytes, str]:
        blob, where = self._read_stored(record.artifact_uri)
        digest = content_sha256(blob)
        if digest != record.artifact_sha256:
            raise ArtifactIntegrityError(
                f"artifact {record.artifact_uri} ({where}) of model {record.id} has sha256 {digest}, but "
                f"{record.artifact_sha256} was registered: it was changed after registration; refusing it"
            )
        return record, blob, where

    def load_artifact(self, model_id: str) -> bytes:
        """The plaintext of the model's (file) artifact, verified: the stored object against its
        registered sha256, then (an encrypted one) decrypted with its tenant's key, every segment
        authenticated, and its plaintext against the registered plaintext sha256.

        Raises ArtifactIntegrityError (tampered or replaced), FileNotFoundError, or the
        :mod:`trialsynth.security` errors naming the object and the key (wrong key, unknown or
        destroyed key version, another tenant's object).
        """
        record, blob, where = self._verified(self.get(model_id))
        if not record.encrypted:  # registered before artifacts were encrypted: the bytes just verified
            return blob
        if not blob.startswith(MAGIC):
            raise ArtifactIntegrityError(f"artifact {record.artifact_uri} of model {model_id} was registered encrypted "
                                         f"with {record.artifact_key_id} but is not encrypted now; refusing it")
        key = lake_key(record.artifact_uri)
        data = decrypt_object(blob, key, key_tenant(key), self._keys(), where)
        digest = hashlib.sha256(data).hexdigest()
        if digest != record.artifact_plaintext_sha256:
            raise ArtifactIntegrityError(
                f"artifact {record.artifact_uri} of model {model_id} (key {read_header(blob).key_id}) "
                f"decrypts to plaintext sha256 {digest}, but {record.artifact_plaintext_sha256} was registered: it was "
                "replaced after registration; refusing it")
        return data

    def load_model(self, model_id: str, expect: type | None = None) -> Any:
        """The model object of ``model_id``, unpickled from :meth:`load_artifact` (verified first; a
        synthesizer saved by ``BaseSynthesizer.save`` before artifacts were encrypted is unwrapped).
        ``expect``: the class it must be an instance of (RegistryError otherwise)."""
        model = pickle.loads(self.load_artifact(model_id))  # noqa: S301 - verified against the registry first
        if isinstance(model, dict) and str(model.get("format", "")).startswith("trialsynth.synthesizer/"):
            model = model["synthesizer"]
        if expect is not None and not isinstance(model, expect):
            raise RegistryError(f"artifact of model {model_id} holds a {type(model).__name__}, not a {expect.__name__}")
        return model

    def resolve_for_generation(self, model: str, allow_unapproved: bool = False) -> ModelRecord:
        """The model the generate step may load, by id or by name, with its artifact verified.

        An id gives that model; a name gives its latest approved model (with ``allow_unapproved``,
        its latest draft when none is approved; a retired model is only reachable by id). A model
        that is not approved raises UnapprovedModelError unless ``allow_unapproved=True`` (then
        logged as a warning). A changed artifact raises ArtifactIntegrityError in every case.
        """
        model = _require_text("model", model)
        try:
            record = self.get(model)
        except UnknownModelError:
            record = self._latest_usable(model, allow_unapproved)
        if record.status != "approved":
            if not allow_unapproved:
                raise UnapprovedModelError(
                    f"model {record.id} ({record.name}) is {record.status}, not approved; approve it with "
                    f"`trialsynth registry approve {record.id} --by ... --why ...` or pass allow_unapproved=True"
                )
            log.warning(
                "using %s model %s (%s): caller opted out of approval", record.status, record.id, record.name
            )
        self.verify_artifact(record.id)
        return record

    def _latest_usable(self, name: str, allow_unapproved: bool) -> ModelRecord:
        """Latest approved model called ``name``; with the opt-out, else its latest draft."""
        known = self.list(name=name)
        if not known:
            raise UnknownModelError(f"no model with id or name {name!r} in the registry")
        usable = ("approved",) if not allow_unapproved else ("approved", "draft")
        for status in usable:
            candidates = [r for r in known if r.status == status]
            if candidates:
                return candidates[-1]
        raise UnapprovedModelError(
            f"no {' or '.join(usable)} model named {name!r} (statuses: {sorted({r.status for r in known})}); "
            "approve one with `trialsynth registry approve MODEL_ID --by ... --why ...`"
            + ("" if allow_unapproved else " or pass allow_unapproved=True")
        )
