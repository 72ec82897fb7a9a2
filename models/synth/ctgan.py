"""Conditional tabular GAN in the style of CTGAN (Xu et al. 2019, "Modeling Tabular Data using
Conditional GAN", NeurIPS): mode-specific normalization, conditional vector with training-by-sampling,
residual generator, PacGAN discriminator, WGAN-GP loss, gumbel-softmax outputs."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.synth.base import MIN_ROWS, BaseSynthesizer
from models.synth.transformers import GanTransformer, ModelColumn, Span

_SAMPLE_CHUNK = 4096  # rows per generator call when sampling


class _Residual(nn.Module):
    """Linear -> BatchNorm -> ReLU, output concatenated with the input (CTGAN generator block)."""

    def __init__(self, i: int, o: int) -> None:
        super().__init__()
        self.fc = nn.Linear(i, o)
        self.bn = nn.BatchNorm1d(o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(self.bn(self.fc(x))), x], dim=1)


class _OutputActivation(nn.Module):
    """tanh on the mode-normalized scalars, gumbel-softmax (tau 0.2) on every one-hot block.

    All blocks go through one gumbel-softmax call, padded to the widest block with -inf logits
    (a Python loop over the blocks cost about 15% of a training step)."""

    def __init__(self, spans: list[Span], tau: float = 0.2) -> None:
        super().__init__()
        self.tau = tau
        soft = [s for s in spans if s.activation == "softmax"]
        gather = torch.zeros(len(soft), max(s.end - s.start for s in soft), dtype=torch.long)
        valid = torch.zeros(gather.shape, dtype=torch.bool)
        for i, s in enumerate(soft):
            gather[i, : s.end - s.start] = torch.arange(s.start, s.end)
            valid[i, : s.end - s.start] = True
        tanh = torch.tensor([s.start for s in spans if s.activation == "tanh"], dtype=torch.long)
        self.register_buffer("tanh_idx", tanh)
        self.register_buffer("gather", gather)
        self.register_buffer("valid", valid)
        self.register_buffer("unpermute", torch.argsort(torch.cat([tanh, gather[valid]])))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        logits = raw[:, self.gather].masked_fill(~self.valid, float("-inf"))
        soft = F.gumbel_softmax(logits, tau=self.tau, dim=-1)[:, self.valid]
        return torch.cat([torch.tanh(raw[:, self.tanh_idx]), soft], dim=1)[:, self.unpermute]


class _Generator(nn.Module):
    """Residual MLP; ``forward`` gives raw outputs (for the condition loss), ``activate`` maps them
    to the network-matrix layout."""

    def __init__(self, input_dim: int, hidden: tuple[int, ...], spans: list[Span], output_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim = input_dim
        for width in hidden:
            layers.append(_Residual(dim, width))
            dim += width
        layers.append(nn.Linear(dim, output_dim))
        self.seq = nn.Sequential(*layers)
        self.activate = _OutputActivation(spans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class _Discriminator(nn.Module):
    """PacGAN critic: scores groups of ``pac`` consecutive rows jointly (Lin et al. 2018)."""

    def __init__(self, input_dim: int, hidden: tuple[int, ...], pac: int) -> None:
        super().__init__()
        self.pac = pac
        layers: list[nn.Module] = []
        dim = input_dim * pac
        for width in hidden:
            layers += [nn.Linear(dim, width), nn.LeakyReLU(0.2), nn.Dropout(0.5)]
            dim = width
        layers.append(nn.Linear(dim, 1))
        self.seq = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x.reshape(-1, self.pac * x.shape[1]))

    def gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor, weight: float) -> torch.Tensor:
        """WGAN-GP penalty (Gulrajani et al. 2017) on pac-group interpolates."""
        alpha = torch.rand(real.shape[0] // self.pac, 1, 1, device=real.device)
        alpha = alpha.expand(-1, self.pac, real.shape[1]).reshape(-1, real.shape[1])
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self(mixed).sum(), mixed, create_graph=True)
        norms = grad.reshape(-1, self.pac * real.shape[1]).norm(2, dim=1)
        return weight * ((norms - 1) ** 2).mean()


class _ConditionSampler:
    """Conditional vectors and matching training rows (training-by-sampling, Xu et al. sec. 4.3).

    For training, a discrete column is drawn uniformly and one of its categories with probability
    proportional to log(1 + count) (or the count with ``log_frequency=False``); the real row is drawn
    among the training rows with that category. For generation, categories follow their frequencies.
    """

    def __init__(self, matrix: np.ndarray, columns: list[ModelColumn], log_frequency: bool) -> None:
        self.columns = [j for j, c in enumerate(columns) if c.discrete]
        sizes = [columns[j].n_categories for j in self.columns]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.dim = int(self.offsets[-1])
        self.order, self.starts, self.counts, self.train_p, self.freq_p = [], [], [], [], []
        for j in self.columns:
            codes = matrix[:, j].astype(int)
            counts = np.bincount(codes, minlength=columns[j].n_categories)
            weight = np.log1p(counts) if log_frequency else counts.astype(float)
            self.order.append(np.argsort(codes, kind="stable"))
            self.starts.append(np.cumsum(counts) - counts)
            self.counts.append(counts)
            self.train_p.append(weight / weight.sum())
            self.freq_p.append(counts / counts.sum())

    def sample_train(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(discrete column index (batch,), category code (batch,), cond vectors (batch, dim))."""
        cols = rng.integers(len(self.columns), size=batch)
        cats = np.empty(batch, dtype=int)
        for d in range(len(self.columns)):
            hit = cols == d
            cats[hit] = rng.choice(len(self.train_p[d]), size=int(hit.sum()), p=self.train_p[d])
        return cols, cats, self.one_hot(cols, cats)

    def sample_rows(self, cols: np.ndarray, cats: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Indices of training rows with category ``cats[i]`` in discrete column ``cols[i]``."""
        rows = np.empty(len(cols), dtype=int)
        for d in range(len(self.columns)):
            hit = cols == d
            c = cats[hit]
            pick = (rng.random(len(c)) * self.counts[d][c]).astype(int)
            rows[hit] = self.order[d][self.starts[d][c] + pick]
        return rows

    def sample_generation(
        self, batch: int, rng: np.random.Generator, fixed: tuple[int, int] | None
    ) -> np.ndarray:
        """Cond vectors (batch, dim): all ``fixed = (discrete column, code)`` if given, else a uniform
        column and a category drawn with its training frequency."""
        if fixed is not None:
            return self.one_hot(np.full(batch, fixed[0]), np.full(batch, fixed[1]))
        if not self.columns:
            return np.zeros((batch, 0), dtype=np.float32)
        cols = rng.integers(len(self.columns), size=batch)
        cats = np.empty(batch, dtype=int)
        for d in range(len(self.columns)):
            hit = cols == d
            cats[hit] = rng.choice(len(self.freq_p[d]), size=int(hit.sum()), p=self.freq_p[d])
        return self.one_hot(cols, cats)

    def one_hot(self, cols: np.ndarray, cats: np.ndarray) -> np.ndarray:
        out = np.zeros((len(cols), self.dim), dtype=np.float32)
        out[np.arange(len(cols)), self.offsets[cols] + cats] = 1.0
        return out


class CTGANSynthesizer(BaseSynthesizer):
    """Conditional tabular GAN (CTGAN architecture) with exact conditional sampling.

    Parameters
    ----------
    epochs : int
        Passes over the training rows (each ``n_rows // batch_size`` steps, at least one), capped
        by ``max_steps``.
    max_steps : int or None
        Cap on the total number of generator updates: the number of epochs run (``epochs_``) is
        ``min(epochs, max(1, max_steps // steps_per_epoch))``. The default keeps 10k rows at
        150 epochs (a few minutes on 2 CPU cores) and lets large tables train for a fixed budget;
        None runs all ``epochs``.
    batch_size : int
        Rows per step; a multiple of ``pac``. Lowered to the largest multiple of ``pac`` not above
        the number of training rows for small tables.
    embedding_dim : int
        Size of the generator's noise input.
    generator_dim, discriminator_dim : tuple of int
        Widths of the residual generator blocks and of the critic's hidden layers.
    generator_lr, discriminator_lr : float
        Adam learning rates; ``betas`` and ``weight_decay`` as in CTGAN (0.5, 0.9) and 1e-6.
    discriminator_steps : int
        Critic updates per generator update.
    pac : int
        Rows the critic scores jointly (PacGAN).
    gradient_penalty : float
        WGAN-GP weight lambda.
    log_frequency : bool
        Training-by-sampling with log-frequencies (True, as in the paper) or raw frequencies.
    max_gmm_components, gmm_subsample : int
        Mode-specific normalization: at most this many modes, fitted on at most this many values.
    device : str or None
        "cpu", "cuda", ...; None picks CUDA when available, else CPU.
    num_threads : int or None
        If set, ``torch.set_num_threads(num_threads)`` before training (a process-wide setting).
    random_state, verbose, progress, min_acceptance : see :class:`BaseSynthesizer`. ``progress`` gets
        one record per epoch: stage="epoch", epoch, epochs, loss_g, loss_d, elapsed_s.

    Attributes
    ----------
    transformer_ : GanTransformer; generator_ : torch module (eval mode);
    epochs_ : int, epochs run; loss_history_ : list of (epoch, loss_g, loss_d), epoch means;
    fit_seconds_ : float.
    """

    def __init__(
        self,
        epochs: int = 300,
        max_steps: int | None = 3000,
        batch_size: int = 500,
        embedding_dim: int = 128,
        generator_dim: tuple[int, ...] = (256, 256),
        discriminator_dim: tuple[int, ...] = (256, 256),
        generator_lr: float = 2e-4,
        discriminator_lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.9),
        weight_decay: float = 1e-6,
        discriminator_steps: int = 1,
        pac: int = 10,
        gradient_penalty: float = 10.0,
        log_frequency: bool = True,
        max_gmm_components: int = 10,
        gmm_subsample: int = 5000,
        device: str | None = None,
        num_threads: int | None = None,
        random_state: int | None = None,
        verbose: bool = False,
        progress: Callable[[dict], None] | None = None,
        min_acceptance: float = 1e-3,
    ) -> None:
        super().__init__(
            random_state=random_state, verbose=verbose, progress=progress, min_acceptance=min_acceptance
        )
        self.epochs = epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.embedding_dim = embedding_dim
        self.generator_dim = generator_dim
        self.discriminator_dim = discriminator_dim
        self.generator_lr = generator_lr
        self.discriminator_lr = discriminator_lr
        self.betas = betas
        self.weight_decay = weight_decay
        self.discriminator_steps = discriminator_steps
        self.pac = pac
        self.gradient_penalty = gradient_penalty
        self.log_frequency = log_frequency
        self.max_gmm_components = max_gmm_components
        self.gmm_subsample = gmm_subsample
        self.device = device
        self.num_threads = num_threads

    # ------------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        super()._validate_params()
        for name in (
            "epochs",
            "batch_size",
            "embedding_dim",
            "discriminator_steps",
            "pac",
            "max_gmm_components",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.max_steps is not None and (
            isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1
        ):
            raise ValueError(f"max_steps must be a positive integer or None, got {self.max_steps!r}")
        if self.batch_size % self.pac:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of pac ({self.pac})")
        if self.gmm_subsample < 10:
            raise ValueError(f"gmm_subsample must be at least 10, got {self.gmm_subsample!r}")
        for name in ("generator_dim", "discriminator_dim"):
            widths = tuple(getattr(self, name))
            if not widths or any(w < 1 for w in widths):
                raise ValueError(f"{name} must be a non-empty tuple of positive widths, got {widths!r}")

    def _min_rows(self) -> int:
        return max(MIN_ROWS, self.pac)

    # ------------------------------------------------------------------ fit
    def _fit(self, matrix: np.ndarray, rng: np.random.Generator) -> None:
        start = time.perf_counter()
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        device = self._device()
        self.transformer_ = GanTransformer(self.max_gmm_components, self.gmm_subsample).fit(
            matrix, self.encoder_.columns_, rng
        )
        data = self.transformer_.transform(matrix, rng)
        self.sampler_ = _ConditionSampler(matrix, self.encoder_.columns_, self.log_frequency)
        self._report(
            f"encoded {data.shape[0]} rows into {data.shape[1]} network columns "
            f"(+{self.sampler_.dim} conditional) in {time.perf_counter() - start:.1f} s",
            stage="transform",
            elapsed_s=time.perf_counter() - start,
        )
        with _seeded_torch(device, rng):
            self._train(torch.from_numpy(data).to(device), rng, device, start)
        self.fit_seconds_ = time.perf_counter() - start

    def _train(
        self, data: torch.Tensor, rng: np.random.Generator, device: torch.device, start: float
    ) -> None:
        n, data_dim = data.shape
        cond_dim = self.sampler_.dim
        batch = min(self.batch_size, n - n % self.pac)
        steps = max(n // batch, 1)
        epochs = self.epochs if self.max_steps is None else max(1, min(self.epochs, self.max_steps // steps))
        self.epochs_ = epochs
        generator = _Generator(
            self.embedding_dim + cond_dim, tuple(self.generator_dim), self.transformer_.spans_, data_dim
        ).to(device)
        critic = _Discriminator(data_dim + cond_dim, tuple(self.discriminator_dim), self.pac).to(device)
        adam = {"betas": tuple(self.betas), "weight_decay": self.weight_decay}
        opt_g = torch.optim.Adam(generator.parameters(), lr=self.generator_lr, **adam)
        opt_d = torch.optim.Adam(critic.parameters(), lr=self.discriminator_lr, **adam)
        self.loss_history_ = []
        every = max(1, epochs // 20)
        for epoch in range(1, epochs + 1):
            sum_g = torch.zeros((), device=device)
            sum_d = torch.zeros((), device=device)
            for _ in range(steps):
                for _ in range(self.discriminator_steps):
                    cond, _, real_cond, rows = self._training_batch(batch, rng, device, with_real=True)
                    real = torch.cat([data[rows], real_cond], dim=1)
                    with torch.no_grad():
                        fake = generator.activate(generator(self._noise(batch, cond, device)))
                    fake = torch.cat([fake, cond], dim=1)
                    loss_d = critic(fake).mean() - critic(real).mean()
                    penalty = critic.gradient_penalty(real, fake, self.gradient_penalty)
                    opt_d.zero_grad(set_to_none=True)
                    (loss_d + penalty).backward()
                    opt_d.step()
                cond, mask, _, _ = self._training_batch(batch, rng, device, with_real=False)
                raw = generator(self._noise(batch, cond, device))
                fake = torch.cat([generator.activate(raw), cond], dim=1)
                loss_g = -critic(fake).mean() + self._condition_loss(raw, cond, mask)
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                sum_g += loss_g.detach()
                sum_d += loss_d.detach()
            record = {
                "stage": "epoch",
                "epoch": epoch,
                "epochs": epochs,
                "loss_g": float(sum_g) / steps,
                "loss_d": float(sum_d) / steps,
                "elapsed_s": time.perf_counter() - start,
            }
            self.loss_history_.append((epoch, record["loss_g"], record["loss_d"]))
            if self.progress is not None or (self.verbose and (epoch % every == 0 or epoch == epochs)):
                self._report(
                    f"epoch {epoch}/{epochs} loss_g={record['loss_g']:.4f} "
                    f"loss_d={record['loss_d']:.4f} elapsed={record['elapsed_s']:.1f}s",
                    **record,
                )
        generator.eval()
        self.generator_ = generator

    def _training_batch(
        self, batch: int, rng: np.random.Generator, device: torch.device, with_real: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, np.ndarray | None]:
        """Cond vectors (batch, cond_dim), column mask (batch, n_discrete); with ``with_real``: the
        cond vectors permuted and the indices of real rows matching them (CTGAN pairs the real batch
        with a shuffled copy of the conditions)."""
        if self.sampler_.dim == 0:
            empty = torch.zeros((batch, 0), device=device)
            rows = rng.integers(self.n_training_rows_, size=batch) if with_real else None
            return empty, empty, empty, rows
        cols, cats, cond = self.sampler_.sample_train(batch, rng)
        mask = np.zeros((batch, len(self.sampler_.columns)), dtype=np.float32)
        mask[np.arange(batch), cols] = 1.0
        real_cond = rows = None
        if with_real:
            perm = rng.permutation(batch)
            rows = self.sampler_.sample_rows(cols[perm], cats[perm], rng)
            real_cond = torch.from_numpy(cond[perm]).to(device)
        return torch.from_numpy(cond).to(device), torch.from_numpy(mask).to(device), real_cond, rows

    def _noise(self, batch: int, cond: torch.Tensor, device: torch.device) -> torch.Tensor:
        return torch.cat([torch.randn(batch, self.embedding_dim, device=device), cond], dim=1)

    def _condition_loss(self, raw: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy between the generated discrete block named by the condition and the condition."""
        if self.sampler_.dim == 0:
            return torch.zeros((), device=raw.device)
        losses = []
        for d, s in enumerate(self.transformer_.discrete_spans_):
            target = cond[:, self.sampler_.offsets[d] : self.sampler_.offsets[d + 1]].argmax(dim=1)
            losses.append(F.cross_entropy(raw[:, s.start : s.end], target, reduction="none"))
        return (torch.stack(losses, dim=1) * mask).sum() / raw.shape[0]

    # ------------------------------------------------------------------ sample
    def _sample(self, n: int, conditions: dict[int, int], rng: np.random.Generator) -> np.ndarray:
        device = self._device()
        self.generator_.to(device)
        fixed = None
        if conditions:  # steer with the rarest requested stratum, reject on all of them
            counts = self.encoder_.category_counts_
            j = min(conditions, key=lambda c: counts[self.encoder_.columns_[c].name][conditions[c]])
            fixed = (self.sampler_.columns.index(j), conditions[j])
        cols = np.array(list(conditions), dtype=int)
        codes = np.array(list(conditions.values()))

        def generate(k: int) -> np.ndarray:
            with _seeded_torch(device, rng), torch.no_grad():
                chunks = []
                chunk = max(self.batch_size, _SAMPLE_CHUNK)  # eval-mode BatchNorm: chunking is free
                for first in range(0, k, chunk):
                    b = min(chunk, k - first)
                    cond = torch.from_numpy(self.sampler_.sample_generation(b, rng, fixed)).to(device)
                    raw = self.generator_(self._noise(b, cond, device))
                    chunks.append(self.generator_.activate(raw).cpu().numpy())
            return self.transformer_.inverse_transform(np.concatenate(chunks))

        def accept(rows: np.ndarray) -> np.ndarray:
            return np.all(rows[:, cols] == codes, axis=1)

        return self._rejection_sample(n, generate, accept, lambda: self._describe_conditions(conditions))

    def _device(self) -> torch.device:
        if self.device is not None:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        generator = state.get("generator_")
        if generator is not None and next(generator.parameters()).device.type != "cpu":
            state["generator_"] = copy.deepcopy(generator).cpu()  # artifacts load on CPU-only machines
        return state


@contextmanager
def _seeded_torch(device: torch.device, rng: np.random.Generator) -> Iterator[None]:
    """Fork torch's global RNG (CPU and ``device``) and seed it from ``rng``, so that dropout,
    gumbel noise and normal draws are reproducible without touching the caller's torch state."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(rng.integers(2**63 - 1)))
        yield
