"""POST /simulate/v1/power: the analytic answer is models.design's, every assumption is echoed, identical
requests come from the cache, and bad inputs are problems naming the field."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from models.design import BinaryDesign, ContinuousDesign, TimeToEventDesign
from tests.api_support import auth, client, local_settings
from trialsynth.api.store import power_cache_table


@pytest.fixture
def api(tmp_path):
    with client(local_settings(tmp_path, rate_burst=1000)) as c:
        yield c


def power(c, body: dict, key: str):
    return c.post("/simulate/v1/power", json=body, headers=auth(c.app.state.ctx.settings) | {"Idempotency-Key": key})


@pytest.mark.parametrize("body,design", [
    ({"endpoint": "continuous", "effect": -3.0, "sigma": 8.0, "dropout": 0.15, "allocation": 2.0},
     ContinuousDesign(effect=-3.0, sd=8.0, dropout=0.15, ratio=2.0)),
    ({"endpoint": "binary", "p_control": 0.3, "p_treatment": 0.45, "alpha": 0.025, "sided": 1},
     BinaryDesign(p_control=0.3, p_treatment=0.45, alpha=0.025, sided=1)),
    ({"endpoint": "tte", "hr": 0.7, "control_median": 18, "accrual": 12, "follow_up": 6, "power": 0.9},
     TimeToEventDesign(hr=0.7, control_median=18, accrual=12, follow_up=6)),
])
def test_analytic_answer_is_the_design_models_with_every_input_echoed(api, body, design):
    r = power(api, body, f"k-{body['endpoint']}")
    assert r.status_code == 200, r.text
    report = r.json()
    size = design.sample_size(body.get("power", 0.8))
    rec = report["recommended"]
    assert (rec["n_per_arm_control"], rec["n_per_arm_treatment"]) == (size.n_control, size.n_treatment)
    assert (rec["enrol_per_arm_control"], rec["total_enrol"], rec["events"]) == (size.enrol_control, size.total_enrol, size.events)
    assert report["method"] == "analytic" and report["seed"] == 0
    assert {k: report["inputs"][k] for k in body} == body  # TTE assumptions included
    assert {"accrual", "follow_up", "control_median", "dropout", "alpha", "allocation"} <= set(report["inputs"])
    curve = [p for p in report["curve"] if p["axis"] == "n_per_arm"]
    assert curve == sorted(curve, key=lambda p: p["x"]) and curve[0]["power"] < rec["analytic_power"] < curve[-1]["power"]


def test_identical_requests_are_served_from_the_cache(api):
    body = {"endpoint": "continuous", "effect": 0.3}
    first = power(api, body, "c1")
    second = power(api, {"effect": 0.3, "endpoint": "continuous", "alpha": 0.05}, "c2")  # same request, other key
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    assert first.content == second.content
    with api.app.state.ctx.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(power_cache_table)).scalar() == 1
    assert power(api, body | {"alpha": 0.01}, "c3").headers["x-cache"] == "miss"


@pytest.mark.parametrize("body,field", [
    ({"endpoint": "continuous"}, "body.effect"),
    ({"endpoint": "continuous", "effect": 0.5, "alpha": 1.5}, "body.alpha"),
    ({"endpoint": "continuous", "effect": 0.5, "dropout": -0.1}, "body.dropout"),
    ({"endpoint": "binary", "p_control": 0.3, "p_treatment": 0.3}, "body.p_treatment"),
    ({"endpoint": "tte", "hr": 1.0}, "body.hr"),
    ({"endpoint": "tte", "hr": 0.7, "sigma": 0}, "body.sigma"),
    ({"endpoint": "gamma", "effect": 1}, "body.endpoint"),
    ({"endpoint": "continuous", "effect": 0.5, "colour": "red"}, "body.colour"),
    ({"endpoint": "continuous", "effect": 0.01, "simulations": 20000}, "body.simulations"),
    # found by the contract test: a 1e308 effect made power NaN and the N search ran forever (a thread per
    # request, never answered); now a 422 at once. Likewise a design needing more than 10 million per arm.
    ({"endpoint": "continuous", "effect": 1e308}, "body.effect"),
    ({"endpoint": "continuous", "effect": 150, "sigma": 1}, "body.effect"),
    ({"endpoint": "tte", "hr": 0.99, "control_median": 1e4, "accrual": 0, "follow_up": 1e-6}, "body.power"),
])
def test_bad_inputs_are_problems_naming_the_field(api, body, field):
    r = power(api, body, f"bad-{field}-{len(str(body))}")
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["errors"][0]["field"] == field and field.removeprefix("body.") in problem["detail"]
    assert problem["errors"][0]["pointer"] == "/" + field.removeprefix("body.")
