"""Demo EDC data: a deterministic synthetic study extract (see :mod:`trialsynth.demo.generator`)."""

from trialsynth.demo.generator import (
    EXTRA_COLUMNS,
    READY_MARKER,
    DemoConfig,
    check_name,
    default_drop_id,
    generate_study,
    write_drop,
)

__all__ = [
    "EXTRA_COLUMNS",
    "READY_MARKER",
    "DemoConfig",
    "check_name",
    "default_drop_id",
    "generate_study",
    "write_drop",
]
