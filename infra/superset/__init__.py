"""Superset deployment: dashboards-as-code bundle, serving DuckDB publish, REST provisioning."""
