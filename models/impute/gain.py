"""GAIN: Generative Adversarial Imputation Nets (Yoon, Jordon & van der Schaar, ICML 2018), in torch.

Follows the authors' reference implementation (github.com/jsyoon0823/GAIN, ``gain.py``/``utils.py``):

- per-column min-max scaling to [0, 1] on the observed values; missing cells enter the generator as
  uniform noise U(0, 0.01);
- generator G(x, m) and discriminator D(x_hat, h): 3-layer perceptrons ``2*dim -> dim -> dim -> dim``
  (ReLU, ReLU, sigmoid), weights ~ N(0, 2 / fan_in) (the reference's ``xavier_init``), zero biases;
- hint ``h = m * b`` with ``b ~ Bernoulli(hint_rate)``;
- D loss ``-mean(m log D + (1 - m) log(1 - D))``; G loss ``-mean((1 - m) log D) + alpha * MSE`` where
  ``MSE = mean((m x - m G)^2) / mean(m)`` (observed cells); logs guarded with ``+1e-8``;
- one Adam step (lr 1e-3, betas (0.9, 0.999)) on D then one on G per mini-batch of ``batch_size`` rows
  drawn without replacement; ``iterations`` mini-batches;
- imputed cells renormalised; columns with fewer than 20 distinct observed values are rounded.

Training is the reference's computation, written for speed (see ``_MLP`` and ``_gain_step``): the
generator's forward pass is shared by the D and G updates of an iteration (the reference computes it
twice with the same weights), cross-entropy gradients are taken in logit form (identical unless D
saturates within ~1e-7 of 0 or 1), and the random draws of blocks of mini-batches are made at once
with a torch generator (so results are seeded, but not the reference's numpy random stream).

Deviations in the output, all deliberate: observed cells are returned exactly (the reference
round-trips them through float32 scaling); rounding snaps an imputed value to the nearest observed level (equal to the
reference's ``np.round`` for integer-coded columns with consecutive codes, but never invents a level,
and it leaves observed cells untouched); a constant column is scaled with range 1 instead of
``max - min + 1e-6``. Scaling parameters, rounding levels and networks come from ``fit``; ``transform``
imputes new rows of the same columns.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from sklearn.utils import check_random_state

from models.impute.baselines import CheckedImputer

_EPS = 1e-8  # the reference's guard inside log(D + 1e-8)
_NOISE_HIGH = 0.01  # missing inputs ~ U(0, 0.01)
_ROUND_BELOW = 20  # columns with fewer distinct observed values are treated as categorical
_REPORT_EVERY = 1000  # iterations between progress reports
_CHUNK_CELLS = 2**16  # random draws are made for blocks of mini-batches holding at most this many cells
_INDEX_DRAWS = 2**22  # ... and at most this many uniform draws for the row sampling


@dataclass(frozen=True)
class GAINProgress:
    """One progress report: losses on the latest mini-batch after ``iteration`` of ``iterations``."""

    iteration: int
    iterations: int
    d_loss: float
    g_loss: float
    mse: float
    seconds: float


class _MLP:
    """3-layer perceptron ``n_in -> hidden -> hidden -> n_out`` (ReLU, ReLU, sigmoid) with its Adam state.

    Backward pass and optimiser step are hand-written on one flat parameter buffer because, for GAIN's
    tiny networks, autograd and ``torch.optim`` bookkeeping cost several times the arithmetic (measured
    ~2.5 ms vs ~0.4 ms per iteration at 569 x 30 on one CPU core). The Adam update itself is torch's
    fused kernel, i.e. exactly what ``torch.optim.Adam(fused=True)`` runs. Gradients are checked
    against autograd in tests/test_gain_core.py.
    """

    def __init__(self, n_in: int, hidden: int, n_out: int, generator: torch.Generator, device: torch.device):
        shapes = [(n_in, hidden), (hidden,), (hidden, hidden), (hidden,), (hidden, n_out), (n_out,)]
        sizes = [math.prod(s) for s in shapes]
        self.flat = torch.zeros(sum(sizes), device=device)
        self.grad = torch.zeros_like(self.flat)
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.step = torch.zeros((), device=device)
        self._one = torch.ones((), device=device)  # step += tensor: a Python scalar would be wrapped per call
        self.params = [v.view(s) for v, s in zip(self.flat.split(sizes), shapes, strict=True)]
        self.grads = [v.view(s) for v, s in zip(self.grad.split(sizes), shapes, strict=True)]
        for w in self.params[0::2]:
            w.copy_(torch.randn(w.shape, generator=generator, device=device) * math.sqrt(2.0 / w.shape[0]))
        self.w2_t, self.w3_t = self.params[2].t(), self.params[4].t()  # views, follow in-place updates

    def forward(self, inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Hidden activations a1, a2 and the sigmoid output, each (batch, width)."""
        w1, b1, w2, b2, w3, b3 = self.params
        a1 = torch.addmm(b1, inp, w1).relu_()
        a2 = torch.addmm(b2, a1, w2).relu_()
        return a1, a2, torch.addmm(b3, a2, w3).sigmoid_()

    def _hidden_grads(self, a1: torch.Tensor, a2: torch.Tensor, dz3: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss gradients at the pre-activations of layers 2 and 1, given the one at layer 3."""
        dz2 = torch.ops.aten.threshold_backward(torch.mm(dz3, self.w3_t), a2, 0.0)  # ReLU backward
        return dz2, torch.ops.aten.threshold_backward(torch.mm(dz2, self.w2_t), a1, 0.0)

    def backward(self, inp: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor, dz3: torch.Tensor) -> None:
        """Write the parameter gradients into ``self.grad``; dz3 = dLoss/d(output pre-activation)."""
        gw1, gb1, gw2, gb2, gw3, gb3 = self.grads
        dz2, dz1 = self._hidden_grads(a1, a2, dz3)
        for g_w, g_b, act, dz in ((gw3, gb3, a2, dz3), (gw2, gb2, a1, dz2), (gw1, gb1, inp, dz1)):
            torch.mm(act.t(), dz, out=g_w)
            torch.sum(dz, 0, out=g_b)

    def input_grad(self, a1: torch.Tensor, a2: torch.Tensor, dz3: torch.Tensor, n_cols: int) -> torch.Tensor:
        """dLoss/d(input) for the first ``n_cols`` input columns, shape (batch, n_cols)."""
        _, dz1 = self._hidden_grads(a1, a2, dz3)
        return torch.mm(dz1, self.params[0][:n_cols].t())

    def adam_step(self) -> None:
        self.step.add_(self._one)
        # private aten op behind torch.optim.Adam(fused=True); the public wrappers add ~0.1 ms per call
        torch._fused_adam_([self.flat], [self.grad], [self.exp_avg], [self.exp_avg_sq], [], [self.step],
                           lr=1e-3, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8,
                           amsgrad=False, maximize=False)


class _Batches(NamedTuple):
    """Per-mini-batch tensors for a block of k iterations; each field is (k, batch, ...); N = batch * dim."""

    x: torch.Tensor  # scaled data, noise in missing cells (batch, dim)
    missing: torch.Tensor  # 1 - m (batch, dim)
    hint: torch.Tensor  # h = m * Bernoulli(hint_rate) (batch, dim)
    g_in: torch.Tensor  # generator input [x, m] (batch, 2 dim)
    d_offset: torch.Tensor  # -m / N
    adv_weight: torch.Tensor  # (1 - m) / N
    adv_offset: torch.Tensor  # -(1 - m) / N
    mse_weight: torch.Tensor  # 2 alpha m / sum(m): gradient factor of alpha * MSE


def _draw_batches(data: torch.Tensor, mask: torch.Tensor, k: int, batch: int, hint_rate: float, alpha: float,
                  generator: torch.Generator) -> _Batches:
    """Draw the rows, noise and hints of k mini-batches at once (the reference draws them per step)."""
    n, dim = data.shape
    dev = data.device
    rows = torch.multinomial(torch.ones(k, n, device=dev), batch, replacement=False, generator=generator)
    m = mask[rows]
    observed = m.bool()
    noise = torch.rand(k, batch, dim, generator=generator, device=dev).mul_(_NOISE_HIGH)
    x = torch.where(observed, data[rows], noise)
    hint = m * (torch.rand(k, batch, dim, generator=generator, device=dev) < hint_rate)
    missing = 1 - m
    adv_weight = missing / (batch * dim)
    return _Batches(
        x=x, missing=missing, hint=hint, g_in=torch.cat([x, m], 2),
        d_offset=m / -(batch * dim), adv_weight=adv_weight, adv_offset=-adv_weight,
        mse_weight=m * (2 * alpha / m.sum((1, 2), keepdim=True).clamp_min(1)),
    )


def _gain_step(gen: _MLP, disc: _MLP, x: torch.Tensor, missing: torch.Tensor, hint: torch.Tensor,
               g_in: torch.Tensor, d_offset: torch.Tensor, adv_weight: torch.Tensor, adv_offset: torch.Tensor,
               mse_weight: torch.Tensor) -> None:
    """One reference iteration on one mini-batch: an Adam step on D, then one on G.

    Argument shapes as in ``_Batches`` without the leading k. The generator's forward pass is shared by
    both updates (the reference recomputes it with the same, not yet updated, weights). Cross-entropy
    gradients use the logit form, d/dz[-m log p - (1 - m) log(1 - p)] = p - m, which is the reference's
    autodiff gradient except where D is saturated within ~1e-7 of 0 or 1: there the reference's
    ``log(p + 1e-8)`` guard makes its gradient vanish, while this one does not.
    """
    dim = x.shape[1]
    a1g, a2g, g_out = gen.forward(g_in)
    d_in = torch.cat([torch.lerp(x, g_out, missing), hint], 1)  # [x_hat, h], x_hat = m x + (1 - m) G
    # discriminator: -mean(m log p + (1 - m) log(1 - p)); gradient at the logit (p - m) / N
    a1, a2, p = disc.forward(d_in)
    disc.backward(d_in, a1, a2, torch.add(d_offset, p, alpha=1.0 / x.numel()))
    disc.adam_step()
    # generator: -mean((1 - m) log p) through the updated D (logit gradient (p - 1)(1 - m) / N) ...
    a1, a2, p = disc.forward(d_in)
    d_xhat = disc.input_grad(a1, a2, torch.addcmul(adv_offset, p, adv_weight), dim)
    # ... plus alpha * MSE on observed cells, then back through the generator's sigmoid g (g' = g - g^2)
    d_gout = torch.addcmul(d_xhat.mul_(missing), g_out - x, mse_weight)
    d_gout.mul_(torch.addcmul(g_out, g_out, g_out, value=-1))
    gen.backward(g_in, a1g, a2g, d_gout)
    gen.adam_step()


def _gain_losses(gen: _MLP, disc: _MLP, b: _Batches) -> tuple[float, float, float]:
    """(D loss, adversarial G loss, MSE) of the reference on one mini-batch, for progress reports."""
    g_out = gen.forward(b.g_in)[2]
    p = disc.forward(torch.cat([torch.lerp(b.x, g_out, b.missing), b.hint], 1))[2]
    m = 1 - b.missing
    d_loss = -(m * torch.log(p + _EPS) + b.missing * torch.log(1 - p + _EPS)).mean()
    g_loss = -(b.missing * torch.log(p + _EPS)).mean()
    mse = ((m * b.x - m * g_out) ** 2).mean() / m.mean()
    return float(d_loss), float(g_loss), float(mse)


@contextmanager
def _torch_threads(n_threads: int | None, device: torch.device) -> Iterator[None]:
    """Run with ``torch.set_num_threads(n_threads)`` on CPU, restoring the previous setting."""
    if n_threads is None or device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _snap(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Each value replaced by the nearest entry of the sorted array ``levels`` (numpy has no such op)."""
    if len(levels) == 1:
        return np.full_like(values, levels[0])
    right = np.searchsorted(levels, values).clip(1, len(levels) - 1)
    left = right - 1
    return np.where(values - levels[left] <= levels[right] - values, levels[left], levels[right])


class GAINImputer(CheckedImputer):
    """GAIN imputer (sklearn-style ``fit`` / ``transform`` / ``fit_transform``).

    Parameters
    ----------
    batch_size : int, default 128
        Rows per mini-batch (all rows when the data has fewer).
    hint_rate : float in [0, 1], default 0.9
        Probability that a cell's mask bit is revealed to the discriminator.
    alpha : float >= 0, default 100
        Weight of the reconstruction MSE on observed cells in the generator loss.
    iterations : int >= 1, default 10000
        Training mini-batches.
    random_state : int, RandomState or None
        Seeds weights, batches, noise and hints; the same seed, data, device and ``n_threads`` give the
        same result.
    device : str, torch.device or None
        None: CUDA when available, else CPU.
    n_threads : int or None, default 1
        torch CPU threads during fit/transform (restored afterwards); one is fastest for GAIN's small
        networks. None leaves torch's setting alone.
    verbose : bool
        Print a progress line to stderr every 1000 iterations.
    progress : callable(GAINProgress) or None
        Called every 1000 iterations (and at the end) with the latest losses.

    Attributes
    ----------
    data_min_, data_range_ : ndarray (n_features,), the min-max scaling (range 1 for constant columns).
    round_levels_ : dict column index -> sorted observed levels, for columns with < 20 distinct values.
    history_ : list of GAINProgress.
    """

    def __init__(self, batch_size: int = 128, hint_rate: float = 0.9, alpha: float = 100.0,
                 iterations: int = 10000, random_state: int | np.random.RandomState | None = None,
                 device: str | torch.device | None = None, n_threads: int | None = 1, verbose: bool = False,
                 progress: Callable[[GAINProgress], None] | None = None) -> None:
        self.batch_size = batch_size
        self.hint_rate = hint_rate
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads
        self.verbose = verbose
        self.progress = progress

    def _check_params(self) -> None:
        for name in ("batch_size", "iterations"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0.0 <= self.hint_rate <= 1.0:
            raise ValueError(f"hint_rate must be in [0, 1], got {self.hint_rate!r}")
        if not self.alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha!r}")
        if self.n_threads is not None and self.n_threads < 1:
            raise ValueError(f"n_threads must be >= 1 or None, got {self.n_threads!r}")

    def _scaled(self, values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Min-max scaled data with 0 in missing cells, and the float observed-mask, as device tensors."""
        observed = ~np.isnan(values)
        scaled = np.where(observed, (values - self.data_min_) / self.data_range_, 0.0)
        return (torch.as_tensor(scaled, dtype=torch.float32, device=self.device_),
                torch.as_tensor(observed, dtype=torch.float32, device=self.device_))

    def _report(self, it: int, batches: _Batches, started: float) -> None:
        report = GAINProgress(it, self.iterations, *_gain_losses(self.generator_, self.discriminator_, batches),
                              seconds=time.perf_counter() - started)
        self.history_.append(report)
        if self.verbose:
            print(f"GAIN {it}/{report.iterations}: D loss {report.d_loss:.4f}, G loss {report.g_loss:.4f}, "
                  f"MSE {report.mse:.5f} ({report.seconds:.1f} s)", file=sys.stderr)
        if self.progress is not None:
            self.progress(report)

    def _fit(self, values: np.ndarray) -> None:
        self._check_params()
        self.device_ = torch.device(self.device if self.device is not None
                                    else "cuda" if torch.cuda.is_available() else "cpu")
        self.seed_ = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self.data_min_ = np.nanmin(values, axis=0)
        span = np.nanmax(values, axis=0) - self.data_min_
        self.data_range_ = np.where(span > 0, span, 1.0)
        self.round_levels_ = {}
        for j in range(values.shape[1]):
            levels = np.unique(values[~np.isnan(values[:, j]), j])
            if len(levels) < _ROUND_BELOW:
                self.round_levels_[j] = levels
        self.history_: list[GAINProgress] = []
        n, dim = values.shape
        batch = min(self.batch_size, n)
        per_chunk = max(1, min(_CHUNK_CELLS // (batch * dim), _INDEX_DRAWS // n))
        with _torch_threads(self.n_threads, self.device_), torch.inference_mode():
            gen = torch.Generator(device=self.device_).manual_seed(self.seed_)
            data, mask = self._scaled(values)
            self.generator_ = _MLP(2 * dim, dim, dim, gen, self.device_)
            self.discriminator_ = _MLP(2 * dim, dim, dim, gen, self.device_)
            started = time.perf_counter()
            for start in range(0, self.iterations, _REPORT_EVERY):
                stop = min(start + _REPORT_EVERY, self.iterations)
                for first in range(start, stop, per_chunk):
                    k = min(per_chunk, stop - first)
                    batches = _draw_batches(data, mask, k, batch, self.hint_rate, self.alpha, gen)
                    for i in range(k):
                        _gain_step(self.generator_, self.discriminator_, *(t[i] for t in batches))
                self._report(stop, _Batches(*(t[-1] for t in batches)), started)

    def _transform(self, values: np.ndarray) -> np.ndarray:
        observed = ~np.isnan(values)
        with _torch_threads(self.n_threads, self.device_), torch.inference_mode():
            data, mask = self._scaled(values)
            gen = torch.Generator(device=self.device_).manual_seed(self.seed_)
            noise = torch.rand(data.shape, generator=gen, device=self.device_).mul_(_NOISE_HIGH)
            x = torch.where(mask.bool(), data, noise)
            imputed = self.generator_.forward(torch.cat([x, mask], 1))[2].double().cpu().numpy()
        imputed = imputed * self.data_range_ + self.data_min_
        for j, levels in self.round_levels_.items():
            imputed[:, j] = _snap(imputed[:, j], levels)
        return np.where(observed, values, imputed)
