"""One router per product: synth, impute, evidence, simulate, jobs, ingest, health."""
