"""The scale-out stack on one machine, for development, tests and demos: PostgreSQL, SeaweedFS (S3 with
Object Lock) and a chDB-backed ClickHouse HTTP endpoint, all on 127.0.0.1 with their state under one
folder (``.stack/`` for ``make stack-up``, a temporary folder in tests).

``python -m infra.stack up|down|status``; the start functions live in :mod:`infra.stack.services`.
Product code never imports this package: it only reads the settings the stack writes.
"""
