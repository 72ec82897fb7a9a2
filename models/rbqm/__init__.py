"""Risk-based quality management: Kaplan-Meier retention and quality tolerance limits."""

from models.rbqm.km import KaplanMeier, discontinuation_times, km_by_group
from models.rbqm.qtl import KRIS, qtl_table

__all__ = ["KRIS", "KaplanMeier", "discontinuation_times", "km_by_group", "qtl_table"]
