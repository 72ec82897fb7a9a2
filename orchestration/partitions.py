"""The tenant x study partitioning every study-level asset shares.

One dynamic dimension whose keys are ``"<tenant>|<study>"`` (see :mod:`trialsynth.names`): only
tenant/study pairs that really exist become partitions, which a two-dimensional cross product would
not give. The landing sensor registers new keys as drops arrive.
"""

import warnings
from typing import Any

import dagster as dg

TENANT_STUDY = "tenant_study"
tenant_study_partitions = dg.DynamicPartitionsDefinition(name=TENANT_STUDY)


def study_check(name: str, *, asset: Any, **kwargs: Any) -> dg.AssetCheckSpec:
    """An asset check of a tenant/study asset whose results carry the partition, so the UI shows a
    failing study as that study (Dagster marks partitioned checks as preview: that warning is
    silenced here). ``kwargs`` as :class:`dagster.AssetCheckSpec`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(name, asset=asset, partitions_def=tenant_study_partitions, **kwargs)
