"""``trialsynth demo`` end to end, as the Dagster pages show it (issue 14): one terminal line per step and
a summary (no dbt log stream; the whole log in a file whose path is printed), no NaN in any metadata
value of the run, every asset check evaluation tied to the study's partition, and the evidence report
opening over HTTP from its link.

Slow (the whole pipeline, minutes on 2 busy cores): run by `make bench` / `pytest -m slow`.
"""

from __future__ import annotations

import json
import math
import re
from contextlib import redirect_stdout
from io import StringIO

import dagster as dg
import pytest

from tests.api_support import client
from tests.conftest import FAST_STUDY_YAML, fast_study_config
from trialsynth.api.report_links import LINK_SECRET_ENV
from trialsynth.cli import main
from trialsynth.settings import get_settings

pytestmark = pytest.mark.slow
PARTITION = "acme|ACME-001"
NAN_TEXT = re.compile(r"\b(nan|NaN|inf|Infinity)\b")


def _not_finite(value: dg.MetadataValue) -> bool:
    raw = getattr(value, "value", value)
    if isinstance(raw, float):
        return not math.isfinite(raw)
    if isinstance(value, dg.JsonMetadataValue):
        try:
            json.dumps(raw, allow_nan=False)
        except ValueError:
            return True
        return False
    return isinstance(raw, str) and bool(NAN_TEXT.search(raw))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"TRIALSYNTH_DATA_DIR": root / "data", "TRIALSYNTH_DAGSTER_HOME": root / "dagster_home",
                            "DAGSTER_HOME": root / "dagster_home",
                            "TRIALSYNTH_STUDIES_DIR": fast_study_config(root / "studies", "ACME-001", FAST_STUDY_YAML)}.items():
            mp.setenv(name, str(value))
        mp.delenv(LINK_SECRET_ENV, raising=False)
        get_settings.cache_clear()
        terminal = StringIO()
        with redirect_stdout(terminal):
            code = main(["demo", "--subjects", "120", "--sites", "3", "--seed", "5", "--no-cdisc"])
        yield code, terminal.getvalue(), get_settings(), dg.DagsterInstance.get()
    get_settings.cache_clear()


def test_the_terminal_gets_one_line_per_step_and_the_log_goes_to_a_file(demo):
    code, out, settings, instance = demo
    assert code == 0, out
    (run,) = instance.get_runs()
    steps = {e.step_key for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)}
    step_lines = [line.split()[1] for line in out.splitlines() if re.match(r"\s+(done|FAILED|skipped)\s", line)]
    assert sorted(step_lines) == sorted(steps) and len(step_lines) == len(set(step_lines))
    assert "START sql" not in out and " - DEBUG - " not in out  # neither dbt's stream nor Dagster's console log
    log = settings.data_path / "logs" / f"{run.run_id}.log"
    assert f"full log: {log}" in out and "[3/3] summary" in out
    text = log.read_text()
    assert "START sql" in text and "STEP_SUCCESS" in text
    # dbt parses the whole project in one step of the run (dbt gives each reason on a line of its own),
    # the other six dbt steps reuse its parse state
    assert text.count("Unable to do partial parsing") <= 2


def test_no_metadata_value_of_the_run_is_nan_and_every_check_carries_the_partition(demo):
    _code, _out, _settings, instance = demo
    (run,) = instance.get_runs()
    bad, checks = [], 0
    for record in instance.all_logs(run.run_id):
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            where, metadata = event.asset_key.to_user_string(), event.step_materialization_data.materialization.metadata
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            checks += 1
            assert evaluation.partition == PARTITION, f"{evaluation.asset_key.to_user_string()}/{evaluation.check_name}"
            where, metadata = f"check {evaluation.check_name}", evaluation.metadata
        else:
            continue
        bad += [f"{where}: {key} = {str(getattr(value, 'value', value))[:200]}"
                for key, value in metadata.items() if _not_finite(value)]
    assert checks > 100 and bad == []


def test_the_evidence_report_opens_from_its_link(demo):
    _code, _out, settings, instance = demo
    (event,) = instance.fetch_materializations(dg.AssetKey("evidence_pack"), limit=1).records
    metadata = event.asset_materialization.metadata
    link = metadata["report"].value
    assert link.startswith(f"{settings.api.public_url}/evidence/v1/reports/acme/ACME-001/")
    response = client(settings, check_tenant_keys=False).get(link.removeprefix(settings.api.public_url))
    assert response.status_code == 200 and "<html" in response.text.lower()
    assert "\n" in metadata["summary"].value  # the summary keeps its lines
