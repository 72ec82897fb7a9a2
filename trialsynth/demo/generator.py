"""Deterministic demo EDC extract of one synthetic two-arm trial, and landing it as a drop.

``generate_study`` returns the SDTM-shaped domains ``dm sv vs lb ae ds dv`` and the EDC operational
tables ``sites queries crf_pages`` with exactly the columns of :mod:`trialsynth.domains` (strings as
pandas ``Categorical``, dates as ``datetime64[s]``, numbers as ``float64``/``int64``) plus the
documented extras in :data:`EXTRA_COLUMNS` (``DM.BMKSTRAT``: biomarker stratum ``high``/``low``).
``write_drop`` writes them to ``<landing>/<tenant>/<study>/<drop_id>/<domain>.<ext>`` and then, last,
an empty ``_READY`` marker. Everything is vectorised numpy; the same arguments give identical frames
and byte-identical files.

The study: a 24-week, randomised, placebo-controlled trial of "Xanomab 50 mg" in hypertension.
Mechanisms (function in brackets):

* Sites [``_make_sites``]: SITEIDs 101, 102, ... in several countries (each served by one CRO),
  selected 30-120 days before a staggered activation (first site on ``start_date``, others within
  180 days). Each site has a feasibility (planned) recruitment rate that sets TARGET_ENROLLMENT and
  an actual rate that differs from it, and its own data-quality profile (log-normal around the study
  mean, mean 1): missing-value rate, CRF entry delay, query rate, query response time, deviation rate,
  AE reporting delay, share of non-serious AEs reported, loss-to-follow-up and screen-fail rates.
* Outlier site: with ``DemoConfig.outlier_site`` (and at least two sites) the LAST SITEID gets
  ``_OUTLIER`` quality: 4x deviations, 3x queries, 3x slower query answers, 4x later CRF and AE
  entry, 2.5x missing values, and only 40 % of non-serious AEs reported, so RBQM z-scores have a real
  site to find.
* Screening [``_make_subjects``]: ``n_subjects`` are screened (= DM rows), spread over sites in
  proportion to actual rate x days open, at uniformly random days in the site's open window (a
  Poisson process given its count). About ``screen_fail_rate`` fail (more often when older), with
  DSTERM reasons such as INCLUSION/EXCLUSION CRITERIA NOT MET; they get ARMCD SCRNFAIL.
* Randomisation: 1:1 to Placebo (PBO) / Xanomab 50 mg (XAN50) in permuted blocks of 4 within strata
  site x biomarker stratum (BMKSTRAT, more often ``high`` in older subjects), Day 1 7-28 days after
  consent.
* Visits [``_schedule``]: Screening, Baseline (Day 1), Weeks 2, 4, 8, 12, 16, 20, 24 on target day
  +/- a uniform draw within the window (3, 3, 5, 7 ... days); with a site-dependent probability a visit
  is out of window (mostly late) -> DV VISIT WINDOW (IMPORTANT at Week 24, the primary endpoint
  visit); Weeks 2-20 can be missed -> DV MISSED VISIT.
* Primary endpoint [``_latent_sbp``]: supine SYSBP at every scheduled visit, whether or not it is
  ever observed: 150 mmHg + covariate effects (AGE, WEIGHT, SEX, BMKSTRAT) + a subject random effect
  + a placebo response ramping to ``placebo_sbp_change`` + on drug an effect ramping to
  ``sbp_effect`` (larger in the ``high`` stratum, averaging exactly ``sbp_effect``) + visit noise.
* Adverse events [``_adverse_events``]: Poisson counts with a gamma frailty, rate ``ae_rate_placebo``
  per subject-year times, on drug, the per-term relative risks of the MedDRA table ``AE_TERMS`` (SOC,
  HLGT, PT); severity, seriousness (~5 %), relatedness (on drug, about the attributable fraction of
  the term), duration. Non-serious AEs are under-reported at site-dependent rates; AEENTDTC = onset +
  a site-dependent delay (SAEs within a day).
* Dropout [``_dropout``]: at each post-baseline visit a discrete-time, cause-specific hazard:
  ADVERSE EVENT grows with the reported AEs (by severity) since the last visit (MAR: observed
  history, and arm through the AE rate); LACK OF EFFICACY grows with the subject's SYSBP at the visit
  that would take place (MNAR: that value is never recorded); WITHDRAWAL BY SUBJECT is higher on drug;
  LOST TO FOLLOW-UP is site dependent. Completers get DS COMPLETED at Week 24.
* Data cut: ``start_date + enrollment_days + cut_lag_days``; nothing after it exists. Subjects still
  on study have no disposition event, AEs onset but not yet entered are absent.
* CRF pages [``_pages``]: per performed visit pages SV, VS, LB (and DM, IE at screening), entered
  after a site-dependent gamma delay (LB after the lab turnaround); a page not entered by the cut has
  ENTRY_DATE null and its data are not in the extract.
* Findings [``_vital_signs``, ``_labs``]: VS at every visit (SYSBP, DIABP, PULSE supine and after 1
  and 3 minutes standing, TEMP, WEIGHT; HEIGHT at screening) and LB (``LB_TESTS`` with units and
  normal ranges -> LBNRIND; drug raises ALT/AST a little, rare transient ALT spikes, more on drug).
  Each result is NOT DONE (``--STAT``, null ``--STRESN``) at the site's missing rate, higher in older
  subjects (MAR on AGE).
* Deviations [``_deviations``]: visit window, missed visit, eligibility, consent, IP administration
  and prohibited medication, each at a base rate x the site's deviation multiplier.
* Queries [``_queries``]: per entered page a Poisson number (site-dependent rate) of AUTO queries
  (opened at entry) and MANUAL ones (opened 3-45 days later at data review), answered after a
  site-dependent gamma delay (a few never answered), closed 0-7 days later; STATUS as of the cut.
"""

from __future__ import annotations

import filecmp
import itertools
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyreadstat

from trialsynth.domains import DOMAINS
from trialsynth.names import validate_name

log = logging.getLogger(__name__)

SDTM_DOMAINS = ("dm", "sv", "vs", "lb", "ae", "ds", "dv")
OPERATIONAL_TABLES = ("sites", "queries", "crf_pages")
EXTRA_COLUMNS: dict[str, tuple[str, ...]] = {"dm": ("BMKSTRAT",)}
FORMATS = ("csv", "parquet", "xpt")
READY_MARKER = "_READY"

_NAT = np.iinfo(np.int64).min  # int64 epoch days with this value view as NaT


@dataclass(frozen=True)
class DemoConfig:
    """Effect sizes and rates of the demo study (units in brackets).

    screen_fail_rate: expected share of screened subjects failing screening.
    sbp_effect: drug minus placebo change from baseline in supine SYSBP at Week 24 [mmHg],
        population average.
    placebo_sbp_change: placebo change from baseline at Week 24 [mmHg].
    ae_rate_placebo: adverse events per subject-year on placebo; the drug rate follows from the
        per-term relative risks in ``AE_TERMS``.
    enrollment_days: screening period from ``start_date`` (first site activation) [days].
    cut_lag_days: data cut = start_date + enrollment_days + cut_lag_days [days]; >= 30 so every
        screened subject is randomised or a screen failure by the cut.
    outlier_site: give the last SITEID markedly poor data quality (see module docstring).
    """

    screen_fail_rate: float = 0.17
    sbp_effect: float = -8.0
    placebo_sbp_change: float = -3.0
    ae_rate_placebo: float = 2.0
    enrollment_days: int = 365
    cut_lag_days: int = 120
    outlier_site: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.screen_fail_rate < 1:
            raise ValueError(f"screen_fail_rate must be in [0, 1), got {self.screen_fail_rate}")
        if self.ae_rate_placebo < 0:
            raise ValueError(f"ae_rate_placebo must be >= 0, got {self.ae_rate_placebo}")
        if self.enrollment_days < 200:
            raise ValueError(f"enrollment_days must be >= 200 (sites activate within 180 days), got {self.enrollment_days}")
        if self.cut_lag_days < 30:
            raise ValueError(f"cut_lag_days must be >= 30, got {self.cut_lag_days}")


# ---------------------------------------------------------------------------------------------
# Reference tables
# ---------------------------------------------------------------------------------------------
# Visit schedule: (VISIT, planned study day, +/- window in days). VISITNUM = position + 1.
VISITS = (
    ("SCREENING", -14, 0), ("BASELINE", 1, 0), ("WEEK 2", 15, 3), ("WEEK 4", 29, 3), ("WEEK 8", 57, 5),
    ("WEEK 12", 85, 7), ("WEEK 16", 113, 7), ("WEEK 20", 141, 7), ("WEEK 24", 169, 7),
)
_N_SLOTS = len(VISITS)
_PLAN_DAY = np.array([v[1] for v in VISITS])
_WINDOW = np.array([v[2] for v in VISITS])
_VISITNUM = np.arange(1.0, _N_SLOTS + 1)
_VISIT_NAMES = [v[0] for v in VISITS]
_MISSABLE = np.array([False, False, True, True, True, True, True, True, False])  # Week 24 completes

ARMS = (("PBO", "Placebo"), ("XAN50", "Xanomab 50 mg"))
_BLOCK_PATTERNS = np.array(sorted(set(itertools.permutations((0, 0, 1, 1)))))

# country: (region, CRO, cities); sites take countries in _COUNTRY_CYCLE order so even a small
# study spans several countries and all CROs.
_COUNTRIES = {
    "USA": ("North America", "Northbridge Clinical", ("Boston", "Houston", "Denver", "Atlanta", "Seattle", "Chicago")),
    "CAN": ("North America", "Northbridge Clinical", ("Toronto", "Montreal", "Vancouver")),
    "DEU": ("Europe", "Meridian Research", ("Berlin", "Munich", "Hamburg", "Cologne")),
    "FRA": ("Europe", "Meridian Research", ("Paris", "Lyon", "Toulouse")),
    "ESP": ("Europe", "Meridian Research", ("Madrid", "Barcelona", "Valencia")),
    "GBR": ("Europe", "Meridian Research", ("London", "Manchester", "Leeds")),
    "POL": ("Europe", "Vistula Clinical", ("Warsaw", "Krakow", "Gdansk")),
    "CZE": ("Europe", "Vistula Clinical", ("Prague", "Brno")),
    "JPN": ("Asia", "Sakura CRO", ("Tokyo", "Osaka", "Nagoya")),
    "KOR": ("Asia", "Sakura CRO", ("Seoul", "Busan")),
}
_COUNTRY_CYCLE = ("USA", "DEU", "POL", "USA", "JPN", "FRA", "CAN", "ESP", "CZE", "USA", "GBR", "KOR")
_SITE_KINDS = ("University Hospital", "Clinical Research Center", "Medical Center")
_REGIONS = ("North America", "Europe", "Asia")
RACES = ("WHITE", "BLACK OR AFRICAN AMERICAN", "ASIAN", "AMERICAN INDIAN OR ALASKA NATIVE", "MULTIPLE")
_RACE_P = np.array([[0.72, 0.14, 0.07, 0.02, 0.05], [0.92, 0.04, 0.03, 0.0, 0.01], [0.01, 0.0, 0.99, 0.0, 0.0]])
ETHNICITIES = ("HISPANIC OR LATINO", "NOT HISPANIC OR LATINO", "NOT REPORTED")
_ETHNIC_P = np.array([[0.13, 0.85, 0.02], [0.04, 0.93, 0.03], [0.0, 0.98, 0.02]])

SCREEN_FAIL_REASONS = ("INCLUSION/EXCLUSION CRITERIA NOT MET", "WITHDRAWAL BY SUBJECT", "PHYSICIAN DECISION",
                       "LOST TO FOLLOW-UP")
_SCREEN_FAIL_P = (0.70, 0.15, 0.08, 0.07)
DROPOUT_REASONS = ("ADVERSE EVENT", "LACK OF EFFICACY", "WITHDRAWAL BY SUBJECT", "LOST TO FOLLOW-UP")

# Typical site quality (multipliers have mean 1 across sites) and the outlier site's values.
_SITE_BASE = {"missing": 0.02, "entry_delay": 4.0, "query": 1.0, "response": 6.0, "deviation": 1.0,
              "ae_delay": 5.0}
_SITE_SPREAD = {"missing": 0.5, "entry_delay": 0.5, "query": 0.35, "response": 0.4, "deviation": 0.3,
                "ae_delay": 0.4, "ltfu": 0.5, "screen_fail": 0.25}
_OUTLIER = {"missing": 2.5, "entry_delay": 4.0, "query": 3.0, "response": 3.0, "deviation": 4.0, "ae_delay": 4.0}
_OUTLIER_AE_REPORTED = 0.4

# MedDRA (SOC, HLGT, PT), verbatim terms, share of placebo AEs, relative risk on drug,
# P(moderate), P(severe), P(serious).
AE_TERMS = (
    ("Gastrointestinal disorders", "Gastrointestinal signs and symptoms", "Nausea", ("NAUSEA", "FEELING SICK"), 6, 1.8, .25, .03, .01),
    ("Gastrointestinal disorders", "Gastrointestinal signs and symptoms", "Vomiting", ("VOMITING", "THREW UP"), 3, 1.6, .30, .05, .03),
    ("Gastrointestinal disorders", "Gastrointestinal motility and defaecation conditions", "Diarrhoea", ("DIARRHEA", "LOOSE STOOLS"), 5, 1.5, .25, .03, .02),
    ("Gastrointestinal disorders", "Gastrointestinal motility and defaecation conditions", "Constipation", ("CONSTIPATION",), 3, 1.2, .20, .02, .01),
    ("Gastrointestinal disorders", "Gastrointestinal signs and symptoms", "Abdominal pain upper", ("UPPER ABDOMINAL PAIN", "STOMACH ACHE"), 3, 1.3, .30, .05, .03),
    ("Nervous system disorders", "Headaches", "Headache", ("HEADACHE",), 9, 1.3, .30, .05, .01),
    ("Nervous system disorders", "Neurological disorders NEC", "Dizziness", ("DIZZINESS", "LIGHTHEADEDNESS"), 5, 2.2, .30, .05, .03),
    ("Nervous system disorders", "Neurological disorders NEC", "Syncope", ("SYNCOPE", "FAINTING"), 0.8, 2.5, .40, .30, .60),
    ("Nervous system disorders", "Neurological disorders NEC", "Somnolence", ("SOMNOLENCE", "DROWSINESS"), 2, 1.2, .20, .02, .01),
    ("Infections and infestations", "Infections - pathogen unspecified", "Nasopharyngitis", ("COMMON COLD", "NASOPHARYNGITIS"), 8, 1.0, .20, .02, .01),
    ("Infections and infestations", "Infections - pathogen unspecified", "Upper respiratory tract infection", ("UPPER RESPIRATORY TRACT INFECTION", "URTI"), 5, 1.0, .30, .03, .02),
    ("Infections and infestations", "Infections - pathogen unspecified", "Urinary tract infection", ("URINARY TRACT INFECTION", "UTI"), 3, 1.0, .35, .05, .05),
    ("Infections and infestations", "Viral infectious disorders", "Influenza", ("INFLUENZA", "FLU"), 2, 1.0, .40, .08, .05),
    ("Infections and infestations", "Infections - pathogen unspecified", "Pneumonia", ("PNEUMONIA",), 1, 1.1, .40, .40, .70),
    ("General disorders and administration site conditions", "General system disorders NEC", "Fatigue", ("FATIGUE", "TIREDNESS"), 6, 1.5, .25, .03, .01),
    ("General disorders and administration site conditions", "General system disorders NEC", "Oedema peripheral", ("ANKLE SWELLING", "PERIPHERAL EDEMA"), 2, 1.4, .25, .03, .02),
    ("General disorders and administration site conditions", "Administration site reactions", "Injection site reaction", ("INJECTION SITE REACTION", "REDNESS AT INJECTION SITE"), 2, 4.0, .15, .01, .01),
    ("General disorders and administration site conditions", "Body temperature conditions", "Pyrexia", ("FEVER", "PYREXIA"), 2, 1.1, .30, .03, .03),
    ("Musculoskeletal and connective tissue disorders", "Joint disorders", "Arthralgia", ("JOINT PAIN", "ARTHRALGIA"), 4, 1.0, .30, .04, .01),
    ("Musculoskeletal and connective tissue disorders", "Musculoskeletal and connective tissue disorders NEC", "Back pain", ("BACK PAIN", "LOWER BACK PAIN"), 4, 1.0, .30, .05, .02),
    ("Musculoskeletal and connective tissue disorders", "Muscle disorders", "Myalgia", ("MUSCLE ACHE", "MYALGIA"), 2, 1.3, .25, .03, .01),
    ("Skin and subcutaneous tissue disorders", "Epidermal and dermal conditions", "Rash", ("RASH", "SKIN RASH"), 3, 1.8, .25, .04, .02),
    ("Skin and subcutaneous tissue disorders", "Epidermal and dermal conditions", "Pruritus", ("ITCHING", "PRURITUS"), 2, 1.6, .20, .02, .01),
    ("Respiratory, thoracic and mediastinal disorders", "Respiratory disorders NEC", "Cough", ("COUGH",), 4, 1.0, .20, .02, .01),
    ("Respiratory, thoracic and mediastinal disorders", "Respiratory disorders NEC", "Dyspnoea", ("SHORTNESS OF BREATH", "DYSPNEA"), 1.5, 1.1, .35, .10, .15),
    ("Respiratory, thoracic and mediastinal disorders", "Respiratory disorders NEC", "Oropharyngeal pain", ("SORE THROAT",), 3, 1.0, .20, .01, .01),
    ("Investigations", "Hepatobiliary investigations", "Alanine aminotransferase increased", ("ALT INCREASED", "ELEVATED ALT"), 1.5, 2.5, .30, .08, .10),
    ("Investigations", "Renal and urinary tract investigations and urinalyses", "Blood creatinine increased", ("CREATININE INCREASED",), 1, 1.5, .25, .05, .05),
    ("Vascular disorders", "Decreased and nonspecific blood pressure disorders and shock", "Hypotension", ("LOW BLOOD PRESSURE", "HYPOTENSION"), 1.5, 3.0, .35, .08, .10),
    ("Vascular disorders", "Vascular hypertensive disorders", "Hypertension", ("HIGH BLOOD PRESSURE", "WORSENING HYPERTENSION"), 3, 0.6, .35, .10, .08),
    ("Psychiatric disorders", "Sleep disorders and disturbances", "Insomnia", ("INSOMNIA", "DIFFICULTY SLEEPING"), 3, 1.2, .20, .02, .01),
    ("Psychiatric disorders", "Anxiety disorders and symptoms", "Anxiety", ("ANXIETY",), 2, 1.0, .30, .04, .02),
    ("Cardiac disorders", "Cardiac disorder signs and symptoms", "Palpitations", ("PALPITATIONS",), 1.5, 1.3, .25, .03, .03),
    ("Cardiac disorders", "Cardiac arrhythmias", "Atrial fibrillation", ("ATRIAL FIBRILLATION", "AFIB"), 0.7, 1.5, .45, .30, .60),
    ("Metabolism and nutrition disorders", "Electrolyte and fluid balance conditions", "Hyperkalaemia", ("HIGH POTASSIUM", "HYPERKALEMIA"), 0.8, 2.0, .30, .10, .15),
)
_AE_WEIGHT = np.array([t[4] for t in AE_TERMS], dtype=float)
_AE_RR = np.array([t[5] for t in AE_TERMS], dtype=float)
_AE_P_MOD = np.array([t[6] for t in AE_TERMS])
_AE_P_SEV = np.array([t[7] for t in AE_TERMS])
_AE_P_SER = np.array([t[8] for t in AE_TERMS])
_AE_VERBATIMS = sorted({v for t in AE_TERMS for v in t[3]})
_SEVERITIES = ("MILD", "MODERATE", "SEVERE")
_SEV_DROP_HAZARD = np.array([0.05, 0.25, 0.60])  # dropout hazard added by one recent AE of that severity
_SER_DROP_HAZARD = 0.40
_AE_RELATIONS = ("NOT RELATED", "UNLIKELY RELATED", "POSSIBLY RELATED", "RELATED")
_AE_OUTCOMES = ("RECOVERED/RESOLVED", "RECOVERED/RESOLVED WITH SEQUELAE", "RECOVERING/RESOLVING",
                "NOT RECOVERED/NOT RESOLVED")

# Vital signs: (VSTESTCD, VSTEST, unit, VSPOS, VSTPT, decimals); one row per visit and entry.
_SUPINE, _STAND1, _STAND3 = "AFTER LYING DOWN FOR 5 MINUTES", "AFTER STANDING FOR 1 MINUTE", "AFTER STANDING FOR 3 MINUTES"
VS_TESTS = (
    ("SYSBP", "Systolic Blood Pressure", "mmHg", "SUPINE", _SUPINE, 0),
    ("DIABP", "Diastolic Blood Pressure", "mmHg", "SUPINE", _SUPINE, 0),
    ("PULSE", "Pulse Rate", "beats/min", "SUPINE", _SUPINE, 0),
    ("SYSBP", "Systolic Blood Pressure", "mmHg", "STANDING", _STAND1, 0),
    ("DIABP", "Diastolic Blood Pressure", "mmHg", "STANDING", _STAND1, 0),
    ("PULSE", "Pulse Rate", "beats/min", "STANDING", _STAND1, 0),
    ("SYSBP", "Systolic Blood Pressure", "mmHg", "STANDING", _STAND3, 0),
    ("DIABP", "Diastolic Blood Pressure", "mmHg", "STANDING", _STAND3, 0),
    ("PULSE", "Pulse Rate", "beats/min", "STANDING", _STAND3, 0),
    ("TEMP", "Temperature", "C", None, None, 1),
    ("WEIGHT", "Weight", "kg", None, None, 1),
    ("HEIGHT", "Height", "cm", None, None, 1),
)
_VS_REASONS = ("EQUIPMENT FAILURE", "SUBJECT REFUSED", "NOT COLLECTED")

# Labs: (LBTESTCD, LBTEST, LBCAT, unit, normal low, normal high, median (male), female/male ratio,
# between-subject log-sd, within-subject log-sd, decimals, drug multiplier at full exposure).
LB_TESTS = (
    ("ALT", "Alanine Aminotransferase", "CHEMISTRY", "U/L", 7, 55, 22, 0.85, 0.35, 0.18, 0, 1.12),
    ("AST", "Aspartate Aminotransferase", "CHEMISTRY", "U/L", 8, 48, 23, 0.9, 0.30, 0.15, 0, 1.08),
    ("ALP", "Alkaline Phosphatase", "CHEMISTRY", "U/L", 40, 129, 75, 1.0, 0.25, 0.08, 0, 1.0),
    ("BILI", "Bilirubin", "CHEMISTRY", "umol/L", 3.4, 20.5, 9, 0.85, 0.35, 0.20, 1, 1.0),
    ("ALB", "Albumin", "CHEMISTRY", "g/L", 35, 50, 42, 0.97, 0.07, 0.04, 0, 1.0),
    ("CREAT", "Creatinine", "CHEMISTRY", "umol/L", 53, 115, 85, 0.78, 0.15, 0.06, 0, 1.03),
    ("BUN", "Blood Urea Nitrogen", "CHEMISTRY", "mmol/L", 2.5, 7.1, 5.0, 0.9, 0.25, 0.12, 1, 1.0),
    ("GLUC", "Glucose", "CHEMISTRY", "mmol/L", 3.9, 5.6, 5.3, 0.97, 0.12, 0.08, 1, 1.0),
    ("SODIUM", "Sodium", "CHEMISTRY", "mmol/L", 135, 145, 140, 1.0, 0.012, 0.010, 0, 1.0),
    ("POTASS", "Potassium", "CHEMISTRY", "mmol/L", 3.5, 5.1, 4.3, 1.0, 0.07, 0.06, 1, 1.02),
    ("HGB", "Hemoglobin", "HEMATOLOGY", "g/L", 120, 175, 150, 0.9, 0.065, 0.035, 0, 1.0),
    ("WBC", "Leukocytes", "HEMATOLOGY", "10^9/L", 4.0, 11.0, 6.5, 1.0, 0.25, 0.12, 1, 1.0),
    ("PLAT", "Platelets", "HEMATOLOGY", "10^9/L", 150, 400, 250, 1.05, 0.20, 0.08, 0, 1.0),
)
_LB_REASONS = ("SAMPLE HEMOLYZED", "SAMPLE NOT RECEIVED", "INSUFFICIENT SAMPLE")
_ALT_SPIKE_P = (0.004, 0.012)  # per post-baseline sample, placebo / drug: transient ALT/AST elevation

# Protocol deviations: (DVCAT, DVDECOD, DVTERM, DVSCAT).
DV_TYPES = (
    ("VISIT WINDOW", "VISIT OUT OF WINDOW", "Visit performed outside the protocol window", "NON-IMPORTANT"),
    ("VISIT WINDOW", "PRIMARY ENDPOINT VISIT OUT OF WINDOW", "Week 24 visit performed outside the protocol window", "IMPORTANT"),
    ("MISSED VISIT", "MISSED VISIT", "Scheduled visit not performed", "NON-IMPORTANT"),
    ("ELIGIBILITY", "INCLUSION/EXCLUSION CRITERIA NOT MET", "Subject randomized without meeting all eligibility criteria", "IMPORTANT"),
    ("CONSENT", "PROCEDURE BEFORE CONSENT", "Study procedure performed before informed consent was signed", "IMPORTANT"),
    ("CONSENT", "CONSENT FORM INCOMPLETE", "Informed consent form signature page incompletely dated", "NON-IMPORTANT"),
    ("IP ADMINISTRATION", "DOSE MISSED", "Study drug dose missed", "NON-IMPORTANT"),
    ("IP ADMINISTRATION", "WRONG KIT DISPENSED", "Kit of the wrong treatment arm dispensed", "IMPORTANT"),
    ("IP ADMINISTRATION", "TEMPERATURE EXCURSION", "Study drug stored outside the labelled temperature range", "NON-IMPORTANT"),
    ("PROHIBITED MEDICATION", "PROHIBITED MEDICATION TAKEN", "Prohibited concomitant antihypertensive medication taken", "IMPORTANT"),
)
(_DV_WINDOW, _DV_WINDOW_PRIMARY, _DV_MISSED, _DV_ELIG, _DV_CONSENT_PROC, _DV_CONSENT_FORM,
 _DV_DOSE, _DV_KIT, _DV_TEMP, _DV_PROHIB) = range(len(DV_TYPES))

# CRF pages: (CRFPAGE, queries per page at an average site, queried fields).
CRF_PAGES = (
    ("DM", 0.25, ("BRTHDTC", "SEX", "RACE", "ETHNIC")),
    ("IE", 0.30, ("IETESTCD", "IEORRES")),
    ("SV", 0.04, ("SVSTDTC",)),
    ("VS", 0.10, ("SYSBP", "DIABP", "PULSE", "TEMP", "WEIGHT", "VSDTC")),
    ("LB", 0.12, tuple(t[0] for t in LB_TESTS) + ("LBDTC",)),
)
_PAGE_DM, _PAGE_IE, _PAGE_SV, _PAGE_VS, _PAGE_LB = range(len(CRF_PAGES))


# ---------------------------------------------------------------------------------------------
# Small vectorised helpers
# ---------------------------------------------------------------------------------------------
def check_name(value: str, parameter: str) -> str:
    """Return ``value`` if it is a safe tenant/study/drop name, else raise ValueError naming ``parameter``."""
    return validate_name(value, parameter)


def _cat(codes: np.ndarray, labels) -> pd.Categorical:
    """String column from integer codes into distinct ``labels`` (-1 = missing); only the labels
    used become categories."""
    codes = np.asarray(codes, dtype=np.int64)
    used = np.zeros(len(labels) + 1, dtype=bool)
    used[codes + 1] = True  # slot 0 collects the missing code -1
    new_code = np.cumsum(used[1:]) - 1
    labels = [label for label, keep in zip(labels, used[1:], strict=True) if keep]
    return pd.Categorical.from_codes(np.where(codes >= 0, new_code[codes], -1), categories=labels)


def _cat_values(values: np.ndarray) -> pd.Categorical:
    """String column from an array of (repeating) strings."""
    labels, codes = np.unique(values, return_inverse=True)
    return _cat(codes, labels)


def _const(value: str, n: int) -> pd.Categorical:
    return _cat(np.zeros(n, dtype=np.int64), [value])


def _dates(days: np.ndarray) -> np.ndarray:
    """int64 epoch days (``_NAT`` = missing) -> datetime64[s]."""
    return np.ascontiguousarray(days, dtype=np.int64).view("datetime64[D]").astype("datetime64[s]")


def _study_day(days: np.ndarray, day1: np.ndarray) -> np.ndarray:
    """SDTM study day (Day 1 = ``day1``, no day 0) as float, NaN where either date is missing."""
    ok = (days != _NAT) & (day1 != _NAT)
    d = np.where(ok, days, 0) - np.where(ok, day1, 0)
    return np.where(ok, d + (d >= 0), np.nan)


def _spread(rng: np.random.Generator, sigma: float, n: int) -> np.ndarray:
    """Log-normal multipliers with mean 1."""
    return np.exp(rng.normal(-sigma**2 / 2, sigma, n))


def _choose_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One categorical draw per row of non-negative ``weights`` (n, k); numpy's ``choice`` takes
    one probability vector only, so per-row probabilities are drawn by inverting the row CDFs."""
    cum = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cum[:, -1]
    return np.minimum((cum <= u[:, None]).sum(axis=1), weights.shape[1] - 1)


def _delay(rng: np.random.Generator, mean: np.ndarray, shape: float) -> np.ndarray:
    """Whole-day delays from a gamma distribution with the given per-row ``mean`` (right-skewed)."""
    return np.rint(rng.gamma(shape, mean / shape)).astype(np.int64)


def _rank_within(sorted_groups: np.ndarray) -> np.ndarray:
    """0-based position of each row within its run of equal values in an already sorted array."""
    return np.arange(len(sorted_groups)) - np.searchsorted(sorted_groups, sorted_groups)


def _format_numbers(values: np.ndarray, decimals: np.ndarray) -> pd.Categorical:
    """Result strings with a fixed number of decimals per row (NaN -> missing). Each distinct rounded
    value is formatted once: there are few, and per-row Python formatting of millions is slow."""
    codes = np.full(len(values), -1, dtype=np.int64)
    labels: list[str] = []
    for d in np.unique(decimals):
        sel = (decimals == d) & ~np.isnan(values)
        uniq, inverse = np.unique(np.round(values[sel], d), return_inverse=True)
        codes[sel] = inverse + len(labels)
        labels.extend(f"{v:.{d}f}" for v in uniq)
    categories, remap = np.unique(np.array(labels, dtype=object), return_inverse=True)
    codes[codes >= 0] = remap[codes[codes >= 0]]
    return _cat(codes, categories)


def _frame(name: str, columns: dict) -> pd.DataFrame:
    """DataFrame in the column order of the domain contract, then the domain's extras."""
    order = DOMAINS[name].column_names + list(EXTRA_COLUMNS.get(name, ()))
    return pd.DataFrame({c: columns[c] for c in order})


def _seq(subject: np.ndarray) -> np.ndarray:
    """--SEQ: 1, 2, ... within each subject (rows sorted by subject)."""
    return _rank_within(subject) + 1.0


# ---------------------------------------------------------------------------------------------
# Simulation steps
# ---------------------------------------------------------------------------------------------
@dataclass
class _Sites:
    siteid: np.ndarray
    name: np.ndarray
    country: np.ndarray
    cro: np.ndarray
    region: np.ndarray  # index into _REGIONS
    selected: np.ndarray
    activated: np.ndarray
    target: np.ndarray
    rate: np.ndarray
    quality: dict[str, np.ndarray]


def _make_sites(n_sites: int, n_subjects: int, cfg: DemoConfig, start: int, enroll_end: int,
                rng: np.random.Generator) -> _Sites:
    i = np.arange(n_sites)
    country = np.array(_COUNTRY_CYCLE)[i % len(_COUNTRY_CYCLE)]
    names = []
    for k, c in enumerate(country):
        nth = int((country[:k] == c).sum())
        cities = _COUNTRIES[c][2]
        suffix = "" if nth < len(cities) else f" {nth // len(cities) + 1}"
        names.append(f"{cities[nth % len(cities)]} {_SITE_KINDS[k % len(_SITE_KINDS)]}{suffix}")
    activated = start + np.concatenate([[0], rng.integers(0, 181, n_sites - 1)])
    selected = activated - rng.integers(30, 121, n_sites)
    planned = _spread(rng, 0.3, n_sites)  # feasibility estimate of the recruitment rate
    rate = planned * _spread(rng, 0.35, n_sites)  # what the site actually achieves
    capacity = planned * (enroll_end - activated)
    target = np.rint(n_subjects * (1 - cfg.screen_fail_rate) * capacity / capacity.sum()).astype(np.int64)
    quality = {k: _SITE_BASE.get(k, 1.0) * _spread(rng, s, n_sites) for k, s in _SITE_SPREAD.items()}
    quality["ae_reported"] = 1 - rng.uniform(0, 0.06, n_sites)
    if cfg.outlier_site and n_sites >= 2:
        for k, mult in _OUTLIER.items():
            quality[k][-1] = _SITE_BASE[k] * mult
        quality["ae_reported"][-1] = _OUTLIER_AE_REPORTED
    return _Sites(
        siteid=np.array([str(101 + k) for k in i]), name=np.array(names), country=country,
        cro=np.array([_COUNTRIES[c][1] for c in country]),
        region=np.array([_REGIONS.index(_COUNTRIES[c][0]) for c in country]),
        selected=selected, activated=activated, target=target, rate=rate, quality=quality,
    )


@dataclass
class _Subjects:
    site: np.ndarray
    usubjid: list[str]
    subjid: list[str]
    screened: np.ndarray
    age: np.ndarray
    female: np.ndarray
    race: np.ndarray
    ethnic: np.ndarray
    height: np.ndarray
    weight: np.ndarray
    bmk_high: np.ndarray
    screen_fail: np.ndarray
    sf_reason: np.ndarray
    sf_day: np.ndarray
    day1: np.ndarray  # hypothetical for screen failures: use only with ~screen_fail
    arm: np.ndarray  # -1 screen failure, 0 placebo, 1 drug


def _make_subjects(n: int, study: str, sites: _Sites, cfg: DemoConfig, enroll_end: int,
                   rng: np.random.Generator) -> _Subjects:
    open_days = enroll_end - sites.activated
    w = sites.rate * open_days
    site = rng.choice(len(w), size=n, p=w / w.sum())
    screened = sites.activated[site] + (rng.random(n) * open_days[site]).astype(np.int64)
    order = np.lexsort((screened, site))
    site, screened = site[order], screened[order]
    number = _rank_within(site) + 1
    width = max(4, len(str(int(number.max()))))
    subjid = [f"{k:0{width}d}" for k in number]
    usubjid = [f"{study}-{sites.siteid[s]}-{k}" for s, k in zip(site, subjid, strict=True)]

    region = sites.region[site]
    female = rng.random(n) < 0.48
    age = np.clip(np.rint(rng.normal(58, 11, n)), 18, 85)
    race = _choose_rows(rng, _RACE_P[region])
    ethnic = _choose_rows(rng, _ETHNIC_P[region])
    height = np.where(female, 163.0, 176.0) - 6.0 * (region == 2) + rng.normal(0, 6.5, n)
    bmi = np.clip(rng.normal(28.5, 4.5, n), 18, 45)
    weight = bmi * (height / 100) ** 2
    bmk_high = rng.random(n) < 1 / (1 + np.exp(0.4 - 0.03 * (age - 58)))

    # site multipliers normalised so the study-wide expected screen-fail share is cfg.screen_fail_rate
    site_fail = sites.quality["screen_fail"] / np.average(sites.quality["screen_fail"], weights=w)
    p_fail = cfg.screen_fail_rate * site_fail[site] * (1 + 0.02 * (age - 58))
    screen_fail = rng.random(n) < np.clip(p_fail, 0, 0.95)
    sf_reason = rng.choice(len(SCREEN_FAIL_REASONS), size=n, p=_SCREEN_FAIL_P)
    sf_day = screened + rng.integers(3, 22, n)
    day1 = screened + rng.integers(7, 29, n)
    arm = np.full(n, -1)
    arm[~screen_fail] = _randomise(site, bmk_high, day1, ~screen_fail, rng)
    return _Subjects(site, usubjid, subjid, screened, age, female, race, ethnic, height, weight, bmk_high,
                     screen_fail, sf_reason, sf_day, day1, arm)


def _randomise(site: np.ndarray, bmk_high: np.ndarray, day1: np.ndarray, eligible: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
    """1:1 permuted blocks of 4 within site x biomarker stratum, in order of Day 1; returns the arm
    of each eligible subject (in subject order)."""
    r = np.flatnonzero(eligible)
    stratum = site[r] * 2 + bmk_high[r]
    pos = np.lexsort((r, day1[r], stratum))
    rank = _rank_within(stratum[pos])
    _, block = np.unique(stratum[pos] * len(r) + rank // 4, return_inverse=True)
    pattern = rng.integers(0, len(_BLOCK_PATTERNS), block.max() + 1)
    arm = np.empty(len(r), dtype=np.int64)
    arm[pos] = _BLOCK_PATTERNS[pattern[block], rank % 4]
    return arm


def _schedule(subj: _Subjects, sites: _Sites, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Would-be visit days (n, 9) of every subject, out-of-window and missed flags."""
    n = len(subj.site)
    dev = sites.quality["deviation"][subj.site][:, None]
    rel = _PLAN_DAY + rng.integers(-_WINDOW, _WINDOW + 1, (n, _N_SLOTS))
    shifted = (rng.random((n, _N_SLOTS)) < 0.04 * dev) & (_WINDOW > 0)
    sign = np.where(rng.random((n, _N_SLOTS)) < 0.75, 1, -1)
    rel = np.where(shifted, _PLAN_DAY + sign * (_WINDOW + rng.integers(1, 11, (n, _N_SLOTS))), rel)
    # keep the visits in order: visit k at least one day after visit k-1
    rel[:, 1:] = np.maximum.accumulate(rel[:, 1:] - np.arange(_N_SLOTS - 1), axis=1) + np.arange(_N_SLOTS - 1)
    days = subj.day1[:, None] - 1 + rel
    days[:, 0] = subj.screened
    out_of_window = (np.abs(rel - _PLAN_DAY) > _WINDOW) & (_WINDOW > 0)
    missed = (rng.random((n, _N_SLOTS)) < np.clip(0.02 * dev, 0, 0.5)) & _MISSABLE
    return days, out_of_window, missed


def _ramp(days: np.ndarray, day1: np.ndarray) -> np.ndarray:
    """Share of the full treatment effect reached, 0 up to Day 1 then 1 - exp(-t / 21 days)."""
    return 1 - np.exp(-np.maximum(days - day1[:, None], 0) / 21.0)


def _latent_sbp(subj: _Subjects, days: np.ndarray, cfg: DemoConfig, rng: np.random.Generator) -> np.ndarray:
    """Supine SYSBP (mmHg, whole numbers) every subject would have at every scheduled visit."""
    n = len(subj.site)
    randomised = subj.arm >= 0
    # effect modification by the biomarker, centred so the average effect is exactly cfg.sbp_effect
    p_high = subj.bmk_high[randomised].mean() if randomised.any() else 0.0
    modifier = 1 + 0.5 * (subj.bmk_high - p_high)
    fixed = (150 + 0.30 * (subj.age - 58) + 0.20 * (subj.weight - 82) - 2.0 * subj.female
             + 4.0 * subj.bmk_high + rng.normal(0, 9, n))
    ramp = _ramp(days, subj.day1)
    effect = cfg.placebo_sbp_change + cfg.sbp_effect * modifier * (subj.arm == 1)
    return np.rint(fixed[:, None] + effect[:, None] * ramp + rng.normal(0, 7, days.shape))


@dataclass
class _AEs:
    subj: np.ndarray
    onset: np.ndarray
    term: np.ndarray
    verbatim: np.ndarray
    severity: np.ndarray
    serious: np.ndarray
    relation: np.ndarray
    end: np.ndarray
    entry: np.ndarray

    def subset(self, keep: np.ndarray) -> _AEs:
        return _AEs(**{k: v[keep] for k, v in vars(self).items()})


def _adverse_events(subj: _Subjects, sites: _Sites, days: np.ndarray, cfg: DemoConfig,
                    rng: np.random.Generator) -> _AEs:
    """Reported AEs over each randomised subject's full planned treatment period (truncated at
    discontinuation and the cut later)."""
    drug_factor = (_AE_WEIGHT * _AE_RR).sum() / _AE_WEIGHT.sum()
    on_drug = subj.arm == 1
    span = days[:, -1] - subj.day1 + 1
    rate = cfg.ae_rate_placebo / 365.25 * np.where(on_drug, drug_factor, 1.0) * rng.gamma(2.0, 0.5, len(span))
    counts = rng.poisson(np.where(subj.arm >= 0, rate * span, 0.0))
    who = np.repeat(np.arange(len(span)), counts)
    m = len(who)
    onset = subj.day1[who] + (rng.random(m) * span[who]).astype(np.int64)
    p_term = np.stack([_AE_WEIGHT, _AE_WEIGHT * _AE_RR])
    p_term /= p_term.sum(axis=1, keepdims=True)
    term = _choose_rows(rng, p_term[on_drug[who].astype(int)])
    verbatim_choice = rng.random(m)
    verbatim = np.array([_AE_VERBATIMS.index(AE_TERMS[t][3][int(u * len(AE_TERMS[t][3]))])
                         for t, u in zip(term, verbatim_choice, strict=True)], dtype=np.int64)
    u = rng.random(m)
    severity = (u < _AE_P_MOD[term] + _AE_P_SEV[term]).astype(np.int64) + (u < _AE_P_SEV[term])
    serious = rng.random(m) < _AE_P_SER[term]
    severity = np.where(serious, np.maximum(severity, 1), severity)
    # investigators attribute about the attributable fraction (RR-1)/RR of drug-arm events, plus noise
    p_related = 0.08 + 0.85 * np.where(on_drug[who], np.clip((_AE_RR[term] - 1) / _AE_RR[term], 0, 1), 0)
    related = rng.random(m) < p_related
    relation = 2 * related + (rng.random(m) < 0.4)
    end = onset + np.rint(rng.lognormal(np.log(6.0), 0.8, m) * np.array([1, 2, 4])[severity]).astype(np.int64)
    site = subj.site[who]
    entry = onset + np.where(serious, rng.integers(0, 2, m), _delay(rng, sites.quality["ae_delay"][site], 2.0))
    reported = serious | (rng.random(m) < sites.quality["ae_reported"][site])
    return _AEs(who, onset, term, verbatim, severity, serious, relation, end, entry).subset(reported)


def _dropout(subj: _Subjects, sites: _Sites, days: np.ndarray, sbp: np.ndarray, aes: _AEs,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Discontinuation slot (9 = none), reason, DS day and the AE behind an ADVERSE EVENT dropout.

    Cause-specific hazards at each post-baseline visit k (interval since visit k-1, in 4-week units dt):
    AE: sum over reported AEs with onset in the interval of a severity weight (+ more if serious);
    lack of efficacy: 0.004 dt exp(0.10 (SYSBP_k - 145)) with SYSBP_k the unobserved would-be value;
    withdrawal: 0.006 dt (x1.6 on drug); lost to follow-up: 0.003 dt x site factor.
    """
    n = len(subj.site)
    # interval k of an AE = number of would-be visit days before its onset: onset in (day_{k-1}, day_k]
    slot = (days[aes.subj] < aes.onset[:, None]).sum(axis=1)
    cell = aes.subj * _N_SLOTS + slot
    weight = _SEV_DROP_HAZARD[aes.severity] + _SER_DROP_HAZARD * aes.serious
    h_ae = np.bincount(cell, weights=weight, minlength=n * _N_SLOTS).reshape(n, _N_SLOTS)
    latest_ae = np.full(n * _N_SLOTS, -1)
    order = np.lexsort((aes.onset, cell))
    last = np.r_[cell[order][1:] != cell[order][:-1], True] if len(order) else np.zeros(0, bool)
    latest_ae[cell[order][last]] = order[last]
    latest_ae = latest_ae.reshape(n, _N_SLOTS)

    dt = np.diff(days, axis=1, prepend=days[:, :1]) / 28.0
    h_loe = 0.004 * dt * np.exp(0.10 * (sbp - 145))
    h_wd = 0.006 * dt * np.where(subj.arm == 1, 1.6, 1.0)[:, None]
    h_ltfu = 0.003 * dt * sites.quality["ltfu"][subj.site][:, None]
    hazards = np.stack([h_ae, h_loe, h_wd, h_ltfu], axis=-1)
    hazards[:, :2] = 0  # no dropout decided at screening or Day 1
    hazards[subj.arm < 0] = 0
    drop = rng.random((n, _N_SLOTS)) < 1 - np.exp(-hazards.sum(axis=-1))
    slot_out = np.where(drop.any(axis=1), drop.argmax(axis=1), _N_SLOTS)
    dropped = np.flatnonzero(slot_out < _N_SLOTS)
    k = slot_out[dropped]
    reason = np.full(n, -1)
    reason[dropped] = _choose_rows(rng, hazards[dropped, k])
    ae_index = np.full(n, -1)
    ds_day = np.full(n, _NAT)
    prev, would_be = days[dropped, k - 1], days[dropped, k]
    u = rng.random(len(dropped))
    uniform_day = prev + 1 + (u * (would_be - prev - 1)).astype(np.int64)
    by_ae = reason[dropped] == 0
    ae_index[dropped[by_ae]] = latest_ae[dropped[by_ae], k[by_ae]]
    ae_onset = aes.onset[ae_index[dropped[by_ae]]]
    ae_day = ae_onset + (u[by_ae] * (np.minimum(7, would_be[by_ae] - 1 - ae_onset) + 1)).astype(np.int64)
    ds_day[dropped] = uniform_day
    ds_day[dropped[by_ae]] = ae_day
    return slot_out, reason, ds_day, ae_index


def _pages(subj: _Subjects, sites: _Sites, days: np.ndarray, performed: np.ndarray,
           rng: np.random.Generator) -> dict[str, np.ndarray]:
    """CRF pages of the performed visits with their entry day (before applying the cut)."""
    vs, vslot = np.nonzero(performed)
    nv = len(vs)
    visit_entry = days[vs, vslot] + _delay(rng, sites.quality["entry_delay"][subj.site[vs]], 1.5)
    entry = np.stack([
        visit_entry + rng.integers(0, 3, nv),  # DM
        visit_entry + rng.integers(0, 3, nv),  # IE
        visit_entry,  # SV
        visit_entry + rng.integers(0, 2, nv),  # VS
        visit_entry + rng.integers(2, 7, nv),  # LB: after the lab turnaround
    ], axis=1)
    exists = np.ones_like(entry, dtype=bool)
    exists[:, [_PAGE_DM, _PAGE_IE]] = (vslot == 0)[:, None]
    v_idx, page = np.nonzero(exists)
    return {"subj": vs[v_idx], "slot": vslot[v_idx], "page": page, "visit_day": days[vs, vslot][v_idx],
            "entry": entry[v_idx, page]}


def _entered_visits(pages: dict[str, np.ndarray], page: int, cut: int) -> tuple[np.ndarray, np.ndarray]:
    sel = (pages["page"] == page) & (pages["entry"] <= cut)
    return pages["subj"][sel], pages["slot"][sel]


def _missing_prob(subj: _Subjects, sites: _Sites, who: np.ndarray) -> np.ndarray:
    """Probability a result is NOT DONE: the site's rate, higher in older subjects (MAR on AGE)."""
    return np.clip(sites.quality["missing"][subj.site[who]] * (1 + 0.03 * (subj.age[who] - 58)), 0, 0.6)


def _findings(prefix: str, study: str, subj: _Subjects, who: np.ndarray, slot: np.ndarray,
              days: np.ndarray, values: np.ndarray, present: np.ndarray, not_done: np.ndarray,
              tests: tuple, units: list[str], decimals: np.ndarray, reasons: tuple[str, ...],
              rng: np.random.Generator) -> tuple[dict, np.ndarray, np.ndarray]:
    """Columns shared by VS and LB from per-visit (nv, n_tests) values (``tests`` rows start with
    code and name, ``units`` per test); returns the columns, each row's test and NOT DONE flag."""
    grid = present.ravel()
    row_who = np.repeat(who, values.shape[1])[grid]
    row_slot = np.repeat(slot, values.shape[1])[grid]
    test = np.tile(np.arange(values.shape[1]), len(who))[grid]
    nd = not_done.ravel()[grid]
    scale = 10.0 ** decimals[test]  # np.round takes one number of decimals only
    value = np.where(nd, np.nan, np.rint(values.ravel()[grid] * scale) / scale)
    result = _format_numbers(value, decimals[test])
    codes = sorted({t[0] for t in tests})
    names = sorted({t[1] for t in tests})
    unit_labels = sorted(set(units))
    day = days[row_who, row_slot]
    n = len(row_who)
    cols = {
        "STUDYID": _const(study, n), "DOMAIN": _const(prefix, n),
        "USUBJID": _cat(row_who, subj.usubjid), f"{prefix}SEQ": _seq(row_who),
        f"{prefix}TESTCD": _cat(np.array([codes.index(t[0]) for t in tests])[test], codes),
        f"{prefix}TEST": _cat(np.array([names.index(t[1]) for t in tests])[test], names),
        f"{prefix}ORRES": result, f"{prefix}STRESC": result, f"{prefix}STRESN": value,
        f"{prefix}ORRESU": _cat(np.where(nd, -1, np.array([unit_labels.index(u) for u in units])[test]), unit_labels),
        f"{prefix}STAT": _cat(np.where(nd, 0, -1), ["NOT DONE"]),
        f"{prefix}REASND": _cat(np.where(nd, rng.integers(0, len(reasons), n), -1), reasons),
        "VISITNUM": _VISITNUM[row_slot], "VISIT": _cat(row_slot, _VISIT_NAMES),
        f"{prefix}DTC": _dates(day), f"{prefix}DY": _study_day(day, subj.day1[row_who]),
    }
    cols[f"{prefix}STRESU"] = cols[f"{prefix}ORRESU"]
    return cols, test, nd


def _vital_signs(study: str, subj: _Subjects, sites: _Sites, days: np.ndarray, sbp: np.ndarray,
                 who: np.ndarray, slot: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    nv = len(who)
    y = sbp[who, slot]
    n = len(subj.site)
    dia = 88 + 0.45 * (y - 150) + rng.normal(0, 5, n)[who] + rng.normal(0, 5, nv)
    pulse = 70 + rng.normal(0, 7, n)[who] + rng.normal(0, 5, nv)
    drug_ramp = _ramp(days, subj.day1)[who, slot] * (subj.arm[who] == 1)
    noise = rng.normal(0, 1, (nv, 6))
    values = np.stack([
        y, dia, pulse,
        y - 6 + 4 * noise[:, 0], dia + 2 + 3 * noise[:, 1], pulse + 10 + 4 * noise[:, 2],
        y - 3 + 4 * noise[:, 3], dia + 1 + 3 * noise[:, 4], pulse + 7 + 4 * noise[:, 5],
        36.7 + rng.normal(0, 0.25, nv),
        subj.weight[who] - 0.8 * drug_ramp + rng.normal(0, 0.6, nv),
        subj.height[who],
    ], axis=1)
    present = np.ones(values.shape, dtype=bool)
    present[:, -1] = slot == 0
    not_done = rng.random(values.shape) < _missing_prob(subj, sites, who)[:, None]
    decimals = np.array([t[5] for t in VS_TESTS])
    cols, test, _ = _findings("VS", study, subj, who, slot, days, values, present, not_done,
                              VS_TESTS, [t[2] for t in VS_TESTS], decimals, _VS_REASONS, rng)
    positions, points = ("STANDING", "SUPINE"), (_STAND1, _STAND3, _SUPINE)
    cols["VSPOS"] = _cat(np.array([positions.index(t[3]) if t[3] else -1 for t in VS_TESTS])[test], positions)
    cols["VSTPT"] = _cat(np.array([points.index(t[4]) if t[4] else -1 for t in VS_TESTS])[test], points)
    return _frame("vs", cols)


def _labs(study: str, subj: _Subjects, sites: _Sites, days: np.ndarray, who: np.ndarray,
          slot: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    nv, n, k = len(who), len(subj.site), len(LB_TESTS)
    lo, hi, median, female, sd_b, sd_w, dec, drug = (np.array([t[i] for t in LB_TESTS], dtype=float)
                                                     for i in range(4, 12))
    log_median = np.log(median) + np.log(female) * subj.female[:, None]  # (n, k)
    subject = log_median + rng.normal(0, 1, (n, k)) * sd_b
    exposure = (_ramp(days, subj.day1)[who, slot] * (subj.arm[who] == 1))[:, None]
    log_value = subject[who] + np.log(drug) * exposure + rng.normal(0, 1, (nv, k)) * sd_w
    p_spike = np.where(subj.arm[who] == 1, _ALT_SPIKE_P[1], _ALT_SPIKE_P[0])
    spike = (slot >= 2) & (rng.random(nv) < p_spike)
    factor = np.where(spike, rng.uniform(3, 8, nv), 1.0)
    log_value[:, 0] += np.log(factor)
    log_value[:, 1] += 0.7 * np.log(factor)
    values = np.exp(log_value)
    not_done = rng.random(values.shape) < _missing_prob(subj, sites, who)[:, None]
    cols, test, nd = _findings("LB", study, subj, who, slot, days, values, np.ones(values.shape, bool),
                               not_done, LB_TESTS, [t[3] for t in LB_TESTS], dec.astype(int), _LB_REASONS, rng)
    categories = ("CHEMISTRY", "HEMATOLOGY")
    cols["LBCAT"] = _cat(np.array([categories.index(t[2]) for t in LB_TESTS])[test], categories)
    cols["LBSTNRLO"], cols["LBSTNRHI"] = lo[test], hi[test]
    value = cols["LBSTRESN"]
    indicator = np.where(value < lo[test], 0, np.where(value > hi[test], 2, 1))
    cols["LBNRIND"] = _cat(np.where(nd, -1, indicator), ("LOW", "NORMAL", "HIGH"))
    return _frame("lb", cols)


def _events_frame(name: str, study: str, subj: _Subjects, who: np.ndarray, day: np.ndarray,
                  kind: np.ndarray, columns: dict) -> pd.DataFrame:
    """Sorted event domain (DS, DV): ``columns`` maps column -> (per-kind codes, labels) or a
    per-row array; rows are ordered by subject, day, kind and numbered by --SEQ."""
    order = np.lexsort((kind, day, who))
    who, day, kind = who[order], day[order], kind[order]
    prefix = name.upper()
    cols = {"STUDYID": _const(study, len(who)), "DOMAIN": _const(prefix, len(who)),
            "USUBJID": _cat(who, subj.usubjid), f"{prefix}SEQ": _seq(who),
            f"{prefix}STDTC": _dates(day)}
    for col, spec in columns.items():
        cols[col] = _cat(spec[0][kind], spec[1]) if isinstance(spec, tuple) else spec[order]
    return _frame(name, cols)


def _disposition(study: str, subj: _Subjects, aes: _AEs, days: np.ndarray, slot_out: np.ndarray,
                 reason: np.ndarray, ds_day: np.ndarray, ae_index: np.ndarray, cut: int) -> pd.DataFrame:
    """DS: consent and randomisation milestones, screen failures, completions, discontinuations."""
    n = len(subj.site)
    rand = np.flatnonzero(subj.arm >= 0)
    completed = rand[(slot_out[rand] == _N_SLOTS) & (days[rand, -1] <= cut)]
    stopped = rand[(slot_out[rand] < _N_SLOTS) & (ds_day[rand] <= cut)]
    sf = np.flatnonzero(subj.screen_fail)
    pts = [t[2].upper() for t in AE_TERMS]
    # kinds: 0 consent, 1 randomised, 2-5 screen-fail reasons, 6 completed, 7-9 other dropout reasons,
    # 10.. adverse event (one DSTERM per preferred term)
    decod = ("INFORMED CONSENT OBTAINED", "RANDOMIZED", *["SCREEN FAILURE"] * 4, "COMPLETED",
             *DROPOUT_REASONS[1:], *["ADVERSE EVENT"] * len(pts))
    term = ("INFORMED CONSENT OBTAINED", "RANDOMIZED", *SCREEN_FAIL_REASONS, "COMPLETED", *DROPOUT_REASONS[1:],
            *[f"ADVERSE EVENT: {pt}" for pt in pts])
    by_ae = stopped[reason[stopped] == 0]
    other = stopped[reason[stopped] > 0]
    who = np.concatenate([np.arange(n), rand, sf, completed, other, by_ae])
    day = np.concatenate([subj.screened, subj.day1[rand], subj.sf_day[sf], days[completed, -1],
                          ds_day[other], ds_day[by_ae]])
    kind = np.concatenate([np.zeros(n, int), np.ones(len(rand), int), 2 + subj.sf_reason[sf],
                           np.full(len(completed), 6), 6 + reason[other], 10 + aes.term[ae_index[by_ae]]])
    slot = np.full(len(decod), -1)  # discontinuations happen between visits: no VISITNUM
    slot[[0, 2, 3, 4, 5]], slot[1], slot[6] = 0, 1, _N_SLOTS - 1
    dsdecod, dsterm = sorted(set(decod)), sorted(set(term))
    category = ("DISPOSITION EVENT", "PROTOCOL MILESTONE")
    rfst = np.where(subj.arm >= 0, subj.day1, _NAT)
    return _events_frame("ds", study, subj, who, day, kind, {
        "DSTERM": (np.array([dsterm.index(t) for t in term]), dsterm),
        "DSDECOD": (np.array([dsdecod.index(d) for d in decod]), dsdecod),
        "DSCAT": (np.array([1, 1] + [0] * (len(decod) - 2)), category),
        "VISITNUM": np.where(slot >= 0, slot + 1.0, np.nan)[kind],
        "VISIT": (slot, _VISIT_NAMES),
        "DSSTDY": _study_day(day, rfst[who]),
    })


def _deviations(study: str, subj: _Subjects, sites: _Sites, days: np.ndarray, performed: np.ndarray,
                out_of_window: np.ndarray, missed: np.ndarray, on_study: np.ndarray, end_day: np.ndarray,
                cut: int, rng: np.random.Generator) -> pd.DataFrame:
    """DV from the schedule (window, missed visits) and per-opportunity rates x site deviation factor."""
    n = len(subj.site)
    mult = sites.quality["deviation"][subj.site]
    rand = np.flatnonzero(subj.arm >= 0)
    w_subj, w_slot = np.nonzero(performed & out_of_window)
    m_subj, m_slot = np.nonzero(missed & on_study & (days <= cut))
    elig = rand[rng.random(len(rand)) < 0.01 * mult[rand]]
    consent = np.flatnonzero(rng.random(n) < 0.01 * mult)
    ip_subj, ip_slot = np.nonzero(performed & (np.arange(_N_SLOTS) >= 2) & (rng.random(days.shape) < 0.025 * mult[:, None]))
    prohib = rand[rng.random(len(rand)) < 0.03 * mult[rand]]
    prohib_day = subj.day1[prohib] + (rng.random(len(prohib)) * (end_day[prohib] - subj.day1[prohib])).astype(np.int64)
    who = np.concatenate([w_subj, m_subj, elig, consent, ip_subj, prohib])
    day = np.concatenate([days[w_subj, w_slot], days[m_subj, m_slot], subj.day1[elig], subj.screened[consent],
                          days[ip_subj, ip_slot], prohib_day])
    kind = np.concatenate([
        np.where(w_slot == _N_SLOTS - 1, _DV_WINDOW_PRIMARY, _DV_WINDOW), np.full(len(m_subj), _DV_MISSED),
        np.full(len(elig), _DV_ELIG),
        rng.choice([_DV_CONSENT_PROC, _DV_CONSENT_FORM], len(consent), p=[0.6, 0.4]),
        rng.choice([_DV_DOSE, _DV_KIT, _DV_TEMP], len(ip_subj), p=[0.7, 0.1, 0.2]),
        np.full(len(prohib), _DV_PROHIB),
    ])
    keep = day <= cut
    columns = {}
    for i, col in enumerate(("DVCAT", "DVDECOD", "DVTERM", "DVSCAT")):
        labels = sorted({t[i] for t in DV_TYPES})
        columns[col] = (np.array([labels.index(t[i]) for t in DV_TYPES]), labels)
    return _events_frame("dv", study, subj, who[keep], day[keep], kind[keep], columns)


def _adverse_event_frame(study: str, subj: _Subjects, aes: _AEs, cut: int) -> pd.DataFrame:
    order = np.lexsort((aes.term, aes.onset, aes.subj))
    a = aes.subset(order)
    n = len(a.subj)
    resolved = a.end <= cut
    # resolved (with sequelae after a severe event lasting > 30 days); ongoing: recovering once past
    # half of its eventual duration
    outcome = np.where(resolved, (a.severity == 2) & (a.end - a.onset > 30),
                       np.where((cut - a.onset) > (a.end - a.onset) / 2, 2, 3))
    col = {i: [t[i] for t in AE_TERMS] for i in (0, 1, 2)}
    labels = {i: sorted(set(col[i])) for i in col}
    return _frame("ae", {
        "STUDYID": _const(study, n), "DOMAIN": _const("AE", n), "USUBJID": _cat(a.subj, subj.usubjid),
        "AESEQ": _seq(a.subj), "AETERM": _cat(a.verbatim, _AE_VERBATIMS),
        "AEDECOD": _cat(np.array([labels[2].index(v) for v in col[2]])[a.term], labels[2]),
        "AEHLGT": _cat(np.array([labels[1].index(v) for v in col[1]])[a.term], labels[1]),
        "AEBODSYS": _cat(np.array([labels[0].index(v) for v in col[0]])[a.term], labels[0]),
        "AESEV": _cat(a.severity, _SEVERITIES), "AESER": _cat(a.serious.astype(int), ("N", "Y")),
        "AEREL": _cat(a.relation, _AE_RELATIONS), "AEOUT": _cat(outcome, _AE_OUTCOMES),
        "AESTDTC": _dates(a.onset), "AEENDTC": _dates(np.where(resolved, a.end, _NAT)),
        "AESTDY": _study_day(a.onset, subj.day1[a.subj]), "AEENTDTC": _dates(a.entry),
    })


def _queries(study: str, subj: _Subjects, sites: _Sites, pages: dict[str, np.ndarray], cut: int,
             rng: np.random.Generator) -> pd.DataFrame:
    entered = np.flatnonzero(pages["entry"] <= cut)
    site = subj.site[pages["subj"][entered]]
    rate = np.array([p[1] for p in CRF_PAGES])[pages["page"][entered]] * sites.quality["query"][site]
    q = np.repeat(entered, rng.poisson(rate))
    m = len(q)
    site = subj.site[pages["subj"][q]]
    manual = rng.random(m) < 0.4
    opened = pages["entry"][q] + np.where(manual, rng.integers(3, 46, m), 0)
    response = sites.quality["response"][site]
    never = rng.random(m) < np.clip(0.04 * response / _SITE_BASE["response"], 0, 0.5)
    answered = np.where(never, _NAT, opened + 1 + _delay(rng, response, 1.2))
    closed = np.where(never, _NAT, answered + rng.integers(0, 8, m))
    keep = opened <= cut
    order = np.flatnonzero(keep)[np.lexsort((pages["page"][q][keep], pages["slot"][q][keep],
                                             pages["subj"][q][keep], opened[keep]))]
    q, opened, answered, closed, manual = q[order], opened[order], answered[order], closed[order], manual[order]
    answered = np.where(answered <= cut, answered, _NAT)  # _NAT is below any day: never-answered stay NaT
    closed = np.where((closed <= cut) & (answered != _NAT), closed, _NAT)
    status = np.where(answered == _NAT, 0, np.where(closed == _NAT, 1, 2))
    page = pages["page"][q]
    fields = sorted({f for p in CRF_PAGES for f in p[2]})
    u = rng.random(len(q))
    field_sizes = np.array([len(p[2]) for p in CRF_PAGES])
    field_pick = (u * field_sizes[page]).astype(np.int64)
    field_code = np.array([[fields.index(p[2][min(i, len(p[2]) - 1)]) for i in range(field_sizes.max())]
                           for p in CRF_PAGES])[page, field_pick]
    n = len(q)
    return _frame("queries", {
        "STUDYID": _const(study, n), "QUERYID": _cat(np.arange(n), [f"Q{k + 1:07d}" for k in range(n)]),
        "SITEID": _cat(subj.site[pages["subj"][q]], sites.siteid), "USUBJID": _cat(pages["subj"][q], subj.usubjid),
        "CRFPAGE": _cat(page, [p[0] for p in CRF_PAGES]), "VISITNUM": _VISITNUM[pages["slot"][q]],
        "FIELD": _cat(field_code, fields), "QUERY_TYPE": _cat(manual.astype(int), ("AUTO", "MANUAL")),
        "OPENED_DTC": _dates(opened), "ANSWERED_DTC": _dates(answered), "CLOSED_DTC": _dates(closed),
        "STATUS": _cat(status, ("OPEN", "ANSWERED", "CLOSED")),
    })


def _demographics(study: str, subj: _Subjects, sites: _Sites, end_day: np.ndarray) -> pd.DataFrame:
    n = len(subj.site)
    arm = subj.arm + 1  # 0 screen failure, 1 placebo, 2 drug
    arm_cd, arm_name = ("SCRNFAIL", *[a[0] for a in ARMS]), ("Screen Failure", *[a[1] for a in ARMS])
    return _frame("dm", {
        "STUDYID": _const(study, n), "DOMAIN": _const("DM", n), "USUBJID": _cat(np.arange(n), subj.usubjid),
        "SUBJID": _cat_values(np.array(subj.subjid)), "SITEID": _cat(subj.site, sites.siteid),
        "AGE": subj.age, "AGEU": _const("YEARS", n), "SEX": _cat(subj.female.astype(int), ("M", "F")),
        "RACE": _cat(subj.race, RACES), "ETHNIC": _cat(subj.ethnic, ETHNICITIES),
        "ARMCD": _cat(arm, arm_cd), "ARM": _cat(arm, arm_name), "ACTARMCD": _cat(arm, arm_cd),
        "ACTARM": _cat(arm, arm_name), "COUNTRY": _cat_values(sites.country[subj.site]),
        "RFICDTC": _dates(subj.screened), "RFSTDTC": _dates(np.where(subj.arm >= 0, subj.day1, _NAT)),
        "RFENDTC": _dates(end_day), "BMKSTRAT": _cat(subj.bmk_high.astype(int), ("low", "high")),
    })


def _subject_visits(study: str, subj: _Subjects, days: np.ndarray, entered: np.ndarray) -> pd.DataFrame:
    who, slot = np.nonzero(entered)
    day, n = days[who, slot], len(who)
    return _frame("sv", {
        "STUDYID": _const(study, n), "DOMAIN": _const("SV", n), "USUBJID": _cat(who, subj.usubjid),
        "VISITNUM": _VISITNUM[slot], "VISIT": _cat(slot, _VISIT_NAMES), "VISITDY": _PLAN_DAY[slot].astype(float),
        "SVSTDTC": _dates(day), "SVENDTC": _dates(day),
    })


def _site_table(study: str, sites: _Sites) -> pd.DataFrame:
    n = len(sites.siteid)
    return _frame("sites", {
        "STUDYID": _const(study, n), "SITEID": _cat(np.arange(n), sites.siteid),
        "SITENAME": _cat_values(sites.name), "COUNTRY": _cat_values(sites.country), "CRO": _cat_values(sites.cro),
        "SELECTED_DATE": _dates(sites.selected), "ACTIVATION_DATE": _dates(sites.activated),
        "TARGET_ENROLLMENT": sites.target,
    })


def _crf_pages(study: str, subj: _Subjects, sites: _Sites, pages: dict[str, np.ndarray], cut: int) -> pd.DataFrame:
    who, n = pages["subj"], len(pages["subj"])
    return _frame("crf_pages", {
        "STUDYID": _const(study, n), "SITEID": _cat(subj.site[who], sites.siteid),
        "USUBJID": _cat(who, subj.usubjid), "CRFPAGE": _cat(pages["page"], [p[0] for p in CRF_PAGES]),
        "VISITNUM": _VISITNUM[pages["slot"]], "VISIT_DATE": _dates(pages["visit_day"]),
        "ENTRY_DATE": _dates(np.where(pages["entry"] <= cut, pages["entry"], _NAT)),
    })


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------
def generate_study(tenant: str, study: str, n_subjects: int = 600, n_sites: int = 12, seed: int = 7,
                   start_date: date = date(2025, 1, 6), *, config: DemoConfig | None = None,
                   return_latent: bool = False) -> dict[str, pd.DataFrame]:
    """Generate one demo study: ``{domain: DataFrame}`` for dm, sv, vs, lb, ae, ds, dv, sites,
    queries, crf_pages (columns as in :mod:`trialsynth.domains` plus :data:`EXTRA_COLUMNS`).

    ``n_subjects`` is the number screened (DM rows); about 80 % are randomised. VS+LB have about
    155 rows per screened subject (600 -> ~95,000 rows, 14,000 -> ~2.2 million). ``start_date`` is
    the first site activation; the data cut is ``start_date + enrollment_days + cut_lag_days`` (:class:`DemoConfig`).
    ``tenant`` is validated only (it is not part of the data). With ``return_latent`` a table
    ``latent`` is added: one row per randomised subject and scheduled visit with the would-be supine
    SYSBP (SYSBP_LATENT, recorded or not), RECORDED (it is in VS) and DROPOUT_VISIT (the subject
    discontinued before this visit, the first one missed because of it).
    Same arguments -> identical frames.
    """
    check_name(tenant, "tenant")
    check_name(study, "study")
    for name, value, low in (("n_subjects", n_subjects, 1), ("n_sites", n_sites, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    cfg = config or DemoConfig()
    # one independent stream per step, so changing one step does not shift the draws of the others
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(11)]
    start = int(np.datetime64(start_date, "D").astype(np.int64))
    enroll_end = start + cfg.enrollment_days
    cut = enroll_end + cfg.cut_lag_days

    sites = _make_sites(n_sites, n_subjects, cfg, start, enroll_end, streams[0])
    subj = _make_subjects(n_subjects, study, sites, cfg, enroll_end, streams[1])
    days, out_of_window, missed = _schedule(subj, sites, streams[2])
    sbp = _latent_sbp(subj, days, cfg, streams[3])
    all_aes = _adverse_events(subj, sites, days, cfg, streams[4])
    slot_out, reason, ds_day, ae_index = _dropout(subj, sites, days, sbp, all_aes, streams[5])
    log.info("demo %s/%s: %d screened, %d randomised", tenant, study, n_subjects, (subj.arm >= 0).sum())

    randomised = subj.arm >= 0
    end_day = np.where(slot_out < _N_SLOTS, ds_day, days[:, -1])
    on_study = np.where(randomised[:, None], np.arange(_N_SLOTS) < slot_out[:, None], np.arange(_N_SLOTS) == 0)
    performed = on_study & ~missed & (days <= cut)
    pages = _pages(subj, sites, days, performed, streams[6])
    aes = all_aes.subset((all_aes.onset <= end_day[all_aes.subj]) & (all_aes.entry <= cut))

    vs_who, vs_slot = _entered_visits(pages, _PAGE_VS, cut)
    lb_who, lb_slot = _entered_visits(pages, _PAGE_LB, cut)
    vs = _vital_signs(study, subj, sites, days, sbp, vs_who, vs_slot, streams[7])
    lb = _labs(study, subj, sites, days, lb_who, lb_slot, streams[8])
    log.info("demo %s/%s: %d VS rows, %d LB rows", tenant, study, len(vs), len(lb))
    visit_entered = np.zeros(days.shape, dtype=bool)
    visit_entered[_entered_visits(pages, _PAGE_SV, cut)] = True
    tables = {
        "dm": _demographics(study, subj, sites, np.where(randomised & (end_day <= cut), end_day, _NAT)),
        "sv": _subject_visits(study, subj, days, visit_entered),
        "vs": vs,
        "lb": lb,
        "ae": _adverse_event_frame(study, subj, aes, cut),
        "ds": _disposition(study, subj, all_aes, days, slot_out, reason, ds_day, ae_index, cut),
        "dv": _deviations(study, subj, sites, days, performed & visit_entered, out_of_window, missed,
                          on_study, end_day, cut, streams[9]),
        "sites": _site_table(study, sites),
        "queries": _queries(study, subj, sites, pages, cut, streams[10]),
        "crf_pages": _crf_pages(study, subj, sites, pages, cut),
    }
    tables["dm"].attrs["demo"] = {"seed": seed, "n_subjects": n_subjects, "n_sites": n_sites}
    if return_latent:
        tables["latent"] = _latent_frame(subj, sbp, vs, slot_out, ds_day, cut)
    return tables


def _latent_frame(subj: _Subjects, sbp: np.ndarray, vs: pd.DataFrame, slot_out: np.ndarray,
                  ds_day: np.ndarray, cut: int) -> pd.DataFrame:
    rand = np.flatnonzero(subj.arm >= 0)
    primary = vs[(vs["VSTESTCD"] == "SYSBP") & (vs["VSTPT"] == _SUPINE) & vs["VSSTRESN"].notna()]
    recorded = np.zeros(sbp.shape, dtype=bool)
    recorded[primary["USUBJID"].cat.codes.to_numpy(), primary["VISITNUM"].to_numpy().astype(int) - 1] = True
    dropout_visit = (np.arange(_N_SLOTS) == slot_out[:, None]) & (ds_day <= cut)[:, None]
    who = np.repeat(rand, _N_SLOTS)
    slot = np.tile(np.arange(_N_SLOTS), len(rand))
    return pd.DataFrame({
        "USUBJID": _cat(who, subj.usubjid), "ARMCD": _cat(subj.arm[who], [a[0] for a in ARMS]),
        "VISITNUM": _VISITNUM[slot], "SYSBP_LATENT": sbp[who, slot],
        "RECORDED": recorded[who, slot], "DROPOUT_VISIT": dropout_visit[who, slot],
    })


def default_drop_id(seed: int, n_subjects: int, n_sites: int, fmt: str = "csv") -> str:
    """Deterministic drop id from the generator parameters, e.g. ``demo-s7-n600-k12`` (csv)."""
    return f"demo-s{seed}-n{n_subjects}-k{n_sites}" + ("" if fmt == "csv" else f"-{fmt}")


def write_drop(tables: dict[str, pd.DataFrame], landing_dir: str | Path, tenant: str, study: str,
               drop_id: str | None = None, fmt: str = "csv") -> Path:
    """Land ``tables`` as ``<landing_dir>/<tenant>/<study>/<drop_id>/<domain>.<ext>`` + ``_READY``.

    Files are written into a staging folder (``<landing_dir>/.staging``, never a valid tenant), the
    folder is renamed into place and the empty ``_READY`` marker is created last, so a reader never
    sees a partial drop. ``fmt``: ``csv`` (UTF-8, header, ISO 8601 dates, '.' decimals), ``parquet``
    (zstd) or ``xpt`` (SAS transport v5 for the SDTM domains; the operational tables, whose column
    names exceed 8 characters, as csv). Bytes depend only on the tables, so the same tables give the
    same files. If the drop already exists with identical files nothing is written (a missing
    ``_READY`` is completed); with different files FileExistsError is raised: drops are immutable.
    ``drop_id`` defaults to :func:`default_drop_id` of the ``generate_study`` parameters.
    """
    check_name(tenant, "tenant")
    check_name(study, "study")
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    unknown = sorted(set(tables) - set(DOMAINS))
    if unknown:
        raise ValueError(f"tables {unknown} are not domains of trialsynth.domains (the latent table is for tests only)")
    if drop_id is None:
        params = tables.get("dm", pd.DataFrame()).attrs.get("demo")
        if params is None:
            raise ValueError("drop_id is required for tables not made by generate_study")
        drop_id = default_drop_id(fmt=fmt, **params)
    check_name(drop_id, "drop_id")
    landing = Path(landing_dir)
    final = landing / tenant / study / drop_id
    (landing / ".staging").mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{tenant}.{study}.{drop_id}.", dir=landing / ".staging"))
    try:
        for name, frame in tables.items():
            _write_table(frame, staging, name, fmt)
        if final.exists():
            _check_same_drop(final, staging)
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, final)
            log.info("wrote drop %s", final)
        ready = final / READY_MARKER
        if not ready.exists():
            ready.touch()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _check_same_drop(final: Path, staging: Path) -> None:
    new = sorted(p.name for p in staging.iterdir())
    old = sorted(p.name for p in final.iterdir() if p.name != READY_MARKER)
    _, mismatch, errors = filecmp.cmpfiles(staging, final, new, shallow=False)
    if new != old or mismatch or errors:
        raise FileExistsError(
            f"drop {final} already exists with different content; drops are immutable, choose another drop id"
        )
    log.info("drop %s already exists with identical content; nothing written", final)


def _write_table(frame: pd.DataFrame, folder: Path, name: str, fmt: str) -> None:
    if fmt == "xpt" and name in SDTM_DOMAINS:
        _write_xpt(frame, folder / f"{name}.xpt", name)
        return
    table = pl.from_pandas(frame).with_columns(pl.col(pl.Datetime).cast(pl.Date))
    if fmt == "parquet":  # plain strings, not dictionary types, so readers get what a sponsor sends
        table.with_columns(pl.col(pl.Categorical).cast(pl.String)).write_parquet(
            folder / f"{name}.parquet", compression="zstd")
        return
    # whole-number float columns (--SEQ, VISITNUM, AGE ...) are written as integers: "1", not "1.0"
    integral = [c for c, dtype in table.schema.items()
                if dtype == pl.Float64 and bool((table[c].drop_nulls() % 1 == 0).all())]
    table.with_columns(pl.col(c).cast(pl.Int64) for c in integral).write_csv(folder / f"{name}.csv")


def as_bronze_frame(frame: pd.DataFrame) -> pl.DataFrame:
    """A generator table as ingestion stores it: categoricals as strings, datetimes as ISO text."""
    out = frame.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype(str)
        elif pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].dt.strftime("%Y-%m-%dT%H:%M:%S")
    return pl.from_pandas(out)


_XPT_STAMP = re.compile(rb"\d\d[A-Z]{3}\d\d:\d\d:\d\d:\d\d")
_XPT_OBS_HEADER = b"HEADER RECORD*******OBS     HEADER RECORD"


def _write_xpt(frame: pd.DataFrame, path: Path, name: str) -> None:
    """SAS transport v5 via pyreadstat: strings with '' for missing, dates as ISO 8601 text (as
    SDTM --DTC variables are). pyreadstat stamps the current time into the headers; it is replaced
    by a fixed one so the bytes depend on the data only."""
    out = {}
    for col in frame.columns:
        s = frame[col]
        if pd.api.types.is_datetime64_any_dtype(s):
            out[col] = s.dt.strftime("%Y-%m-%d").astype(object).where(s.notna(), "")
        elif isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(s):
            out[col] = s.astype(object).where(s.notna(), "")
        else:
            out[col] = s.astype(float)
    pyreadstat.write_xport(pd.DataFrame(out), str(path), table_name=name.upper(), file_format_version=5)
    data = path.read_bytes()
    head = data.index(_XPT_OBS_HEADER)
    path.write_bytes(_XPT_STAMP.sub(b"01JAN70:00:00:00", data[:head]) + data[head:])
