"""The tenant x study partitioning every study-level asset shares.

One dynamic dimension whose keys are ``"<tenant>|<study>"`` (see :mod:`trialsynth.names`): only
tenant/study pairs that really exist become partitions, which a two-dimensional cross product would
not give. The landing sensor registers new keys as drops arrive.
"""

import dagster as dg

TENANT_STUDY = "tenant_study"
tenant_study_partitions = dg.DynamicPartitionsDefinition(name=TENANT_STUDY)
