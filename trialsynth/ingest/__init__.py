"""Landing zone, immutable raw zone, readers, validation and bronze Parquet (no Dagster here)."""
