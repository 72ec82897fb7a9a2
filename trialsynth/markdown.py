"""Tiny Markdown table renderer for Dagster metadata (avoids depending on ``tabulate``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def md_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, floatfmt: str = ".4g") -> str:
    if not rows:
        return "_(none)_"
    cols = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else format(v, floatfmt)  # a missing number is a blank cell, not "nan"
        return "" if v is None else str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
