"""Missing-data profiling, MCAR/MAR diagnostics and amputation."""

from models.missingness.ampute import ampute, ampute_mask
from models.missingness.little import LittleResult, em_mean_cov, little_mcar_test
from models.missingness.mar import mar_diagnostics
from models.missingness.profile import missing_patterns, missingness_profile

__all__ = [
    "LittleResult",
    "ampute",
    "ampute_mask",
    "em_mean_cov",
    "little_mcar_test",
    "mar_diagnostics",
    "missing_patterns",
    "missingness_profile",
]
