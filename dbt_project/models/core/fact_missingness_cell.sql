-- One row per expected measurement: each visit a subject actually had (SV) crossed with each
-- test the study collects at that visit number (a VS/LB test with at least one record there).
-- A cell is observed when at least one of its records has a value and is not NOT DONE; it is
-- missing when it has no record or only NOT DONE / empty ones. Records at visits absent from SV
-- are outside the expected set, and so is every visit of a screen failure (never randomized:
-- its study data is not expected; models/expected_cells.py's screen_failures() is the same rule).
-- Each cell also carries the date it counts at on the data-entry timeline (see time_basis).
with subjects as (
    select tenant_id, study_id, usubjid, site_id, arm, armcd
    from {{ ref('dim_subject') }}
    where {{ partition_filter() }}
),

-- DM ARMCD 'SCRNFAIL' or ARM 'SCREEN FAIL...', any case (SDTMIG 3.1-3.2; the CDISC pilot's
-- 'Scrnfail' / 'Screen Failure'). SDTMIG 3.3+ ARMNRS 'SCREEN FAILURE' is not a bronze DM column.
screen_failures as (
    select tenant_id, study_id, usubjid, 1 as is_screen_failure
    from subjects
    where upper(coalesce(armcd, '')) = 'SCRNFAIL' or upper(coalesce(arm, '')) like 'SCREEN FAIL%'
),

all_visits as (
    select tenant_id, study_id, usubjid, visitnum, min(visit_start_date) as visit_date
    from {{ ref('stg_sv') }}
    where {{ partition_filter() }} and visitnum is not null and usubjid is not null
    group by tenant_id, study_id, usubjid, visitnum
),

subject_visits as (
    select v.tenant_id as tenant_id, v.study_id as study_id, v.usubjid as usubjid, v.visitnum as visitnum,
        v.visit_date as visit_date
    from all_visits as v
    left join screen_failures as sf
        on sf.tenant_id = v.tenant_id and sf.study_id = v.study_id and sf.usubjid = v.usubjid
    -- coalesce: the same whether an unmatched row gives NULL or ClickHouse's default 0 (join_use_nulls)
    where coalesce(sf.is_screen_failure, 0) = 0
),

observations as (
    select tenant_id, study_id, usubjid, domain, test_code, visitnum, is_missing, obs_date
    from {{ ref('fact_observation') }}
    where {{ partition_filter() }} and visitnum is not null and test_code is not null
),

collected as (
    select distinct tenant_id, study_id, domain, test_code, visitnum
    from observations
),

cell_records as (
    select
        tenant_id,
        study_id,
        usubjid,
        domain,
        test_code,
        visitnum,
        count(*) as n_records,
        max(case when is_missing then 0 else 1 end) as n_observed,
        min(obs_date) as first_obs_date
    from observations
    group by tenant_id, study_id, usubjid, domain, test_code, visitnum
),

-- Data-entry date of a subject visit's CRF page: the page named after the domain (VS, LB) when
-- the log has one, else the latest entry among that visit's pages (the visit fully entered).
pages as (
    select tenant_id, study_id, usubjid, visitnum, upper(crf_page) as page, max(entry_date) as entry_date
    from {{ ref('stg_crf_pages') }}
    where {{ partition_filter() }} and visitnum is not null
    group by tenant_id, study_id, usubjid, visitnum, upper(crf_page)
),

visit_entry as (
    select tenant_id, study_id, usubjid, visitnum, max(entry_date) as entry_date
    from pages
    group by tenant_id, study_id, usubjid, visitnum
),

studies as (
    select tenant_id, study_id, has_crf_pages
    from {{ ref('dim_study') }}
    where {{ partition_filter() }}
),

cells as (
    select
        sv.tenant_id as tenant_id,
        sv.study_id as study_id,
        sv.usubjid as usubjid,
        c.domain as domain,
        c.test_code as test_code,
        sv.visitnum as visitnum,
        sv.visit_date as visit_date,
        coalesce(r.n_records, 0) as n_records,
        coalesce(r.n_observed, 0) as n_observed,
        r.first_obs_date as first_obs_date,
        coalesce(p.entry_date, ve.entry_date) as entry_date
    from subject_visits as sv
    inner join collected as c
        on c.tenant_id = sv.tenant_id and c.study_id = sv.study_id and c.visitnum = sv.visitnum
    left join cell_records as r
        on r.tenant_id = sv.tenant_id and r.study_id = sv.study_id and r.usubjid = sv.usubjid
        and r.domain = c.domain and r.test_code = c.test_code and r.visitnum = sv.visitnum
    left join pages as p
        on p.tenant_id = sv.tenant_id and p.study_id = sv.study_id and p.usubjid = sv.usubjid
        and p.visitnum = sv.visitnum and p.page = c.domain
    left join visit_entry as ve
        on ve.tenant_id = sv.tenant_id and ve.study_id = sv.study_id and ve.usubjid = sv.usubjid
        and ve.visitnum = sv.visitnum
)

select
    cells.tenant_id as tenant_id,
    cells.study_id as study_id,
    cells.usubjid as usubjid,
    subjects.site_id as site_id,
    cells.domain as domain,
    cells.test_code as variable,
    cells.visitnum as visitnum,
    cells.n_records as n_records,
    {{ flag('cells.n_observed = 1') }} as is_observed,
    {{ flag('cells.n_observed = 0') }} as is_missing,
    cells.visit_date as visit_date,
    cells.first_obs_date as first_obs_date,
    cells.entry_date as entry_date,
    case when studies.has_crf_pages then 'crf_entry_date' else 'observation_date' end as time_basis,
    case
        when studies.has_crf_pages then coalesce(cells.entry_date, cells.first_obs_date, cells.visit_date)
        else coalesce(cells.first_obs_date, cells.visit_date)
    end as basis_date
from cells
left join subjects
    on subjects.tenant_id = cells.tenant_id and subjects.study_id = cells.study_id
    and subjects.usubjid = cells.usubjid
left join studies
    on studies.tenant_id = cells.tenant_id and studies.study_id = cells.study_id
