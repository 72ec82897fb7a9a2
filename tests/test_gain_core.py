"""GAINImputer: the hand-written training step against autograd, seeding, output guarantees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.impute.gain import _MLP, GAINImputer, GAINProgress, _draw_batches, _gain_step


def _correlated(n: int = 300, seed: int = 0) -> np.ndarray:
    """Four columns driven by one latent factor (so observed columns predict missing ones)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 1))
    return z @ np.array([[1.0, -2.0, 0.5, 3.0]]) + 0.1 * rng.normal(size=(n, 4)) + np.array([0, 10, -5, 100])


def _mcar(X: np.ndarray, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    mask = np.random.default_rng(seed).random(X.shape) < rate
    return np.where(mask, np.nan, X), mask


def _reference_step(gen: list[torch.Tensor], disc: list[torch.Tensor], opt_g: torch.optim.Adam,
                    opt_d: torch.optim.Adam, x: torch.Tensor, m: torch.Tensor, h: torch.Tensor, alpha: float) -> None:
    """The reference's losses (jsyoon0823/GAIN gain.py) with autograd and torch.optim.Adam."""
    def mlp(p, a, b):
        out = torch.relu(torch.cat([a, b], 1) @ p[0] + p[1])
        out = torch.relu(out @ p[2] + p[3])
        return torch.sigmoid(out @ p[4] + p[5])

    g_sample = mlp(gen, x, m)
    d_prob = mlp(disc, x * m + g_sample.detach() * (1 - m), h)
    d_loss = -torch.mean(m * torch.log(d_prob + 1e-8) + (1 - m) * torch.log(1 - d_prob + 1e-8))
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    g_sample = mlp(gen, x, m)
    d_prob = mlp(disc, x * m + g_sample * (1 - m), h)
    g_loss = -torch.mean((1 - m) * torch.log(d_prob + 1e-8))
    mse = torch.mean((m * x - m * g_sample) ** 2) / torch.mean(m)
    opt_g.zero_grad()
    (g_loss + alpha * mse).backward()
    opt_g.step()


def test_training_step_matches_autograd_reference():
    dim, batch, alpha = 5, 16, 100.0
    gen_rng = torch.Generator().manual_seed(3)
    data = torch.rand(40, dim, generator=gen_rng)
    mask = (torch.rand(40, dim, generator=gen_rng) > 0.3).float()
    gen = _MLP(2 * dim, dim, dim, gen_rng, torch.device("cpu"))
    disc = _MLP(2 * dim, dim, dim, gen_rng, torch.device("cpu"))
    ref_g = [p.clone().requires_grad_() for p in gen.params]
    ref_d = [p.clone().requires_grad_() for p in disc.params]
    opt_g, opt_d = torch.optim.Adam(ref_g), torch.optim.Adam(ref_d)
    batches = _draw_batches(data, mask, 4, batch, 0.9, alpha, gen_rng)
    with torch.no_grad():
        for i in range(4):
            _gain_step(gen, disc, *(t[i] for t in batches))
    for i in range(4):
        _reference_step(ref_g, ref_d, opt_g, opt_d, batches.x[i], 1 - batches.missing[i], batches.hint[i], alpha)
    for ours, ref in zip(gen.params + disc.params, ref_g + ref_d, strict=True):
        torch.testing.assert_close(ours, ref.detach(), rtol=1e-4, atol=1e-6)
    # and the step really moved the weights away from their initial values
    assert not torch.allclose(gen.params[0], _MLP(2 * dim, dim, dim, torch.Generator().manual_seed(3),
                                                  torch.device("cpu")).params[0])


def test_batches_follow_reference_sampling():
    dim = 3
    gen = torch.Generator().manual_seed(0)
    data = torch.rand(50, dim, generator=gen)
    mask = (torch.rand(50, dim, generator=gen) > 0.5).float()
    b = _draw_batches(data, mask, 200, 20, 0.9, 100.0, gen)
    observed = b.missing == 0
    # missing inputs are U(0, 0.01) noise, observed inputs are data
    assert b.x[~observed].max() <= 0.01 and b.x[~observed].min() >= 0.0
    assert torch.equal(b.g_in[..., dim:], observed.float())
    # hint = m * Bernoulli(0.9): never reveals a missing cell, reveals ~90% of observed ones
    assert b.hint[~observed].sum() == 0
    assert b.hint[observed].mean().item() == pytest.approx(0.9, abs=0.02)
    # rows within a mini-batch are distinct (sampled without replacement)
    rows_in_batch = b.g_in[0, :, :dim]
    assert torch.unique(rows_in_batch, dim=0).shape[0] == 20


def test_same_seed_same_result_and_seed_matters():
    Xm, _ = _mcar(_correlated(120), 0.2, 1)
    a = GAINImputer(iterations=150, random_state=7).fit_transform(Xm)
    b = GAINImputer(iterations=150, random_state=7).fit_transform(Xm)
    c = GAINImputer(iterations=150, random_state=8).fit_transform(Xm)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_observed_cells_kept_and_output_finite():
    X = _correlated(200)
    Xm, mask = _mcar(X, 0.3, 2)
    out = GAINImputer(iterations=100, random_state=0).fit_transform(Xm)
    assert out.shape == X.shape and np.isfinite(out).all()
    np.testing.assert_array_equal(out[~mask], X[~mask])


def test_gain_learns_the_structure_better_than_mean_imputation():
    X = _correlated(400)
    Xm, mask = _mcar(X, 0.2, 3)
    span = X.max(0) - X.min(0)
    out = GAINImputer(iterations=1500, batch_size=64, random_state=0).fit_transform(Xm)
    mean_fill = np.where(mask, np.nanmean(Xm, axis=0), X)
    rmse = lambda imp: np.sqrt(np.mean((((imp - X) / span)[mask]) ** 2))  # noqa: E731
    assert rmse(out) < 0.6 * rmse(mean_fill)


def test_transform_new_rows_and_categorical_levels():
    X = _correlated(300)
    X[:, 0] = np.where(X[:, 1] > 10, 2.0, 7.0)  # two levels, not consecutive integers
    Xm, mask = _mcar(X, 0.25, 5)
    imp = GAINImputer(iterations=200, random_state=1).fit(Xm[:200])
    out = imp.transform(Xm[200:])
    assert set(np.unique(out[:, 0])) <= {2.0, 7.0}
    assert np.isfinite(out).all()
    # transform is deterministic
    np.testing.assert_array_equal(out, imp.transform(Xm[200:]))
    assert list(imp.round_levels_) == [0]


def test_constant_column_is_imputed_with_its_value():
    X = _correlated(100)
    X[:, 2] = 4.5
    Xm, mask = _mcar(X, 0.2, 6)
    out = GAINImputer(iterations=50, random_state=0).fit_transform(Xm)
    assert np.all(out[:, 2] == 4.5)


def test_progress_every_1000_iterations():
    reports: list[GAINProgress] = []
    Xm, _ = _mcar(_correlated(60), 0.2, 7)
    imp = GAINImputer(iterations=2100, batch_size=16, random_state=0, progress=reports.append).fit(Xm)
    assert [r.iteration for r in reports] == [1000, 2000, 2100]
    assert all(np.isfinite([r.d_loss, r.g_loss, r.mse]).all() for r in reports)
    assert imp.history_ == reports


@pytest.mark.parametrize(("param", "value"), [("batch_size", 0), ("hint_rate", 1.5), ("alpha", -1.0),
                                              ("iterations", 0), ("n_threads", 0)])
def test_bad_parameters_are_named(param, value):
    Xm, _ = _mcar(_correlated(30), 0.2, 8)
    with pytest.raises(ValueError, match=param):
        GAINImputer(**{param: value}).fit(Xm)


def test_transform_rejects_other_column_count():
    Xm, _ = _mcar(_correlated(30), 0.2, 9)
    imp = GAINImputer(iterations=10, random_state=0).fit(Xm)
    with pytest.raises(ValueError, match="4"):
        imp.transform(Xm[:, :3])


def test_restores_torch_thread_setting():
    before = torch.get_num_threads()
    Xm, _ = _mcar(_correlated(30), 0.2, 10)
    GAINImputer(iterations=10, random_state=0, n_threads=1).fit_transform(Xm)
    assert torch.get_num_threads() == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_runs_and_is_seeded():
    Xm, mask = _mcar(_correlated(200), 0.2, 11)
    a = GAINImputer(iterations=300, random_state=0, device="cuda").fit_transform(Xm)
    b = GAINImputer(iterations=300, random_state=0, device="cuda").fit_transform(Xm)
    assert np.isfinite(a).all()
    np.testing.assert_allclose(a, b, rtol=1e-5)
