"""A LOCAL STAND-IN FOR A CLICKHOUSE SERVER, for development, tests and demos on machines where no
current ClickHouse server can be installed.

It runs the ClickHouse engine itself (chDB, ClickHouse 26.x in-process, MergeTree tables on disk)
behind a small loopback HTTP endpoint that speaks the part of ClickHouse's HTTP interface that
clickhouse-connect and dbt-clickhouse use. Product code never imports it: trialsynth only knows
``warehouse.clickhouse_*`` settings, which production points at a real ClickHouse server or cluster.

Start it with ``python -m infra.clickhouse --path DIR --port PORT`` (or through ``make stack-up``).
"""
