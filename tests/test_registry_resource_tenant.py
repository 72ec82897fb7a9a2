"""A run's model registry is bound to the run's tenant: on the stack's Postgres (row-level security,
issue 12) a run of tenant beta cannot see the model a run of tenant acme registered."""


import dagster as dg

from infra.stack.postgres import APP_ROLE
from orchestration.resources import RegistryResource

PARTITIONS = dg.StaticPartitionsDefinition(["acme|ACME-001", "beta|BETA-001"])


def test_registry_runs_see_only_their_tenants_models(stack, settings):
    url = stack.postgres.url("registry", with_password=True, user=APP_ROLE)
    seen: dict[str, list[str]] = {}
    artifact = settings.lake_dir / "acme" / "ACME-001" / "model.pkl"  # artifacts live in the tenant's lake
    artifact.parent.mkdir(parents=True)
    artifact.write_bytes(b"model bytes")

    @dg.asset(partitions_def=PARTITIONS)
    def probe(context: dg.AssetExecutionContext, registry: RegistryResource) -> None:
        reg = registry.get()
        if context.partition_key.startswith("acme"):
            reg.register(kind="synthesizer", name="acme/ACME-001/copula", trained_by="test",
                         training_data_sha256="0" * 64, artifact_path=artifact)
        seen[context.partition_key] = [m.name for m in reg.list(kind="synthesizer")]

    for key in PARTITIONS.get_partition_keys():
        assert dg.materialize([probe], partition_key=key, resources={"registry": RegistryResource(url=url)}).success
    assert "acme/ACME-001/copula" in seen["acme|ACME-001"]
    # same database, same query, another tenant: none of acme's models (other tests may have registered beta's)
    assert not [name for name in seen["beta|BETA-001"] if name.startswith("acme")]
