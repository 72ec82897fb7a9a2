-- "Closest imputation" audit: every cell KNN filled (donor mode) with its donors, the records whose
-- values were averaged into it (asset imputed_dataset, models/impute/fill.py): the record and visit
-- filled, the donor's subject and visit, rank (1 = nearest), nan-Euclidean distance over the commonly
-- observed variables, the donor's value and its weight. Empty when the study's imputer is not KNN.
select
    tenant_id,
    study_id,
    USUBJID as usubjid,
    VISITNUM as visitnum,
    VISIT as visit,
    VARIABLE as variable,
    FILLED_VALUE as filled_value,
    DONOR_RANK as donor_rank,
    DONOR_USUBJID as donor_usubjid,
    DONOR_VISITNUM as donor_visitnum,
    DONOR_VISIT as donor_visit,
    DISTANCE as distance,
    N_COMMON as n_common,
    DONOR_VALUE as donor_value,
    WEIGHT as weight,
    METHOD as method
from {{ lake_table('analytics', 'imputation_delta', extra_file='donors') }} as d
where {{ partition_filter() }}
