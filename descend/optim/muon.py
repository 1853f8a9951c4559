"""Muon: momentum, orthogonalised by a Newton-Schulz iteration, for the weight matrices of the
hidden layers (Keller Jordan's Muon, airbench94_muon, torch.optim.Muon).

    B_t = mu B_{t-1} + (1 - mu) G_t                       Momentum's EMA (``ema_``), B_0 = 0
    M_t = (1 - mu) G_t + mu B_t    (nesterov)   or   M_t = B_t
    O_t = NS_5(M_t) ~ U V^T  where  M_t = U S V^T         every singular value pushed to ~1
    theta_t = (1 - eta lambda) theta_{t-1} - eta s O_t,   s = sqrt(max(1, rows / cols))

A conv filter bank (out, in, kh, kw) is the matrix out x (in kh kw), as airbench has it. Biases,
norms and the classifier head are no matrices of a hidden layer: they take Nesterov momentum in
their own parameter groups (`MuonWithAuxiliary`, registered as ``muon``; `muon_groups`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from descend.cpu import multiplies_bf16
from descend.errors import ConfigError
from descend.optim.base import (
    DescendOptimizer,
    check_hyper,
    group_by_device_and_dtype,
    weight_decay_foreach,
    weight_decay_single,
)
from descend.optim.ema import ema_, foreach_ema_
from descend.optim.momentum import _multi_tensor_momentum, _single_tensor_momentum
from descend.optim.registry import OPTIMIZERS

__all__ = ["NS_COEFFICIENTS", "Muon", "MuonWithAuxiliary", "muon_groups", "newton_schulz"]

# Keller Jordan's quintic: the largest slope at 0 (a = 3.4445) for which five steps still
# bring every singular value of a normalised matrix into about [0.7, 1.2]; torch's default.
NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)
# bfloat16 is torch's (and Keller's) choice: the iteration only needs singular values near 1,
# not exact ones, and bf16 matmuls are the fast ones on GPUs. float64 is for tests.
NS_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
# "auto" (the default): bfloat16 where the device multiplies it natively, float32 elsewhere.
NS_DTYPE_CHOICES = ("auto", *NS_DTYPES)
# torch.optim.Muon's adjust_lr_fn: the step's scale s as a function of the matrix's shape.
ADJUST_LR_FNS = (None, "original", "match_rms_adamw", "spectral_unclamped")


def as_matrix(t: Tensor) -> Tensor:
    """The matrix Muon sees: rows = out features/channels, cols = everything else (a conv
    filter bank out x in x kh x kw is out x (in kh kw)), a view where the memory allows."""
    return t.flatten(1)


def lr_scale(rows: int, cols: int, adjust_lr_fn: str | None = None) -> float:
    """s, torch's ``_adjust_lr`` on the matrix's shape: None and "original" (Keller's)
    sqrt(max(1, rows / cols)), "match_rms_adamw" 0.2 sqrt(max(rows, cols)) (Moonshot's),
    "spectral_unclamped" sqrt(rows / cols) (Bernstein's)."""
    ratio = rows / max(cols, 1)  # an empty matrix has nothing to scale
    if adjust_lr_fn in (None, "original"):
        return math.sqrt(max(1.0, ratio))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(ratio)  # "spectral_unclamped"


def ns_dtype_on(name: str, device: torch.device) -> torch.dtype:
    """The Newton-Schulz precision ``name`` means on ``device``; "auto" is bfloat16 on a GPU
    and on a CPU that multiplies bfloat16 natively (`descend.cpu.multiplies_bf16`: amx_bf16
    or avx512_bf16), float32 elsewhere. Without those instructions bfloat16 matrix products are
    emulated: on a 2-core AVX2-only EPYC, five steps on a 1024 x 768 matrix took 9.0 s in
    bfloat16 against 0.10 s in float32 (256 x 576: 282 against 6.4 ms), and float32's O is
    the closer to the exact polar factor (`newton_schulz`)."""
    if name != "auto":
        return NS_DTYPES[name]
    return torch.bfloat16 if multiplies_bf16(device) else torch.float32


def newton_schulz(
    m: Tensor,
    steps: int = 5,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = 1e-7,
    dtype: torch.dtype = torch.bfloat16,
) -> Tensor:
    """O ~ U V^T for M = U S V^T (a matrix, or a batch of same-shaped ones), in M's dtype.

        X_0 = M / max(||M||_F, eps)               all singular values in [0, 1]
        A = X X^T,  X <- a X + (b A + c A^2) X    each singular value s -> a s + b s^3 + c s^5

    computed in ``dtype`` on the wide orientation (transposed when rows > cols, so that A is
    the smaller Gram matrix). The quintic is tuned for speed, not convergence: after 5 steps
    the singular values lie in about [0.7, 1.2], not at 1 (torch's and Keller's docstrings).

    Measured on Gaussian matrices (128x256, 256x576, 576x256, seed 0): the singular values of
    O lie in [0.681, 1.135] in float32 and [0.680, 1.137] in bfloat16 (the design's spread,
    the same in both), so O is 0.17-0.21 from the exact U V^T (SVD, float64) in relative
    Frobenius norm in both; rounding is the small part: bfloat16's O is 0.011-0.012 from
    float32's, float32's 2e-6 from float64's. A square Gaussian 64x64 keeps its smallest
    singular value at 0.09 (float32) or 0.07 (bf16): five steps cannot lift values near 0.
    ``tests/optim/test_optim_muon.py`` asserts these.
    """
    a, b, c = coefficients
    tall = m.size(-2) > m.size(-1)
    x = m.to(dtype)
    x = x.mT if tall else x
    # One Frobenius norm per matrix; torch's `norm()` for a single one (the same bits as its).
    norm = x.norm() if x.ndim == 2 else torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True)
    x = x / norm.clamp(min=eps)
    addmm = torch.addmm if x.ndim == 2 else torch.baddbmm
    for _ in range(steps):
        gram = x @ x.mT  # A = X X^T
        poly = addmm(gram, gram, gram, beta=b, alpha=c)  # b A + c A^2
        x = addmm(x, poly, x, beta=a)  # a X + (b A + c A^2) X
    x = x.mT if tall else x
    return x.to(m.dtype)  # exact from bf16: the same step as adding the bf16 O to theta



class Muon(DescendOptimizer):
    r"""Muon, torch.optim.Muon's formulas and defaults; bit for bit ``torch.optim.Muon`` on
    the CPU (the same tensor operations) with ``ns_dtype="bfloat16"``, torch's precision and
    what the default, "auto", takes where the CPU multiplies bfloat16 natively (elsewhere
    "auto" is float32, 18-88x faster there). torch's takes only 2-D parameters.

    Per matrix (a conv filter bank as out x (in kh kw)), with eta the lr, lambda the weight
    decay, mu the momentum, (a, b, c) the coefficients and k the steps::

        B_t = mu B_{t-1} + (1 - mu) G_t            B_0 = 0 (torch's ``buf.lerp_``)
        M_t = (1 - mu) G_t + mu B_t                nesterov (default); else M_t = B_t
        O_t = NS_k(M_t)                            `newton_schulz`: O_t ~ U V^T, in ns_dtype
        theta_t = (1 - eta lambda) theta_{t-1} - eta s O_t

    with s = sqrt(max(1, rows / cols)) (``adjust_lr_fn`` None or "original"; see `lr_scale`
    for the others). The weight decay is decoupled and uses eta, not eta s, as torch does.
    Keller's undamped form B_t = mu B_{t-1} + G_t, M_t = G_t + mu B_t is the same direction
    times 1 / (1 - mu), and O_t does not depend on M_t's scale (X_0 divides by ||M_t||_F), so
    the step is the same up to eps.

    Only matrices: a parameter with fewer than two dimensions raises `ConfigError`, unless its
    parameter group says ``muon=False``; such groups take Nesterov momentum instead,
    d_t = g_t + mu v_t (torch's ``SGD(nesterov=True)``, descend's ``nesterov``), with L2
    weight decay unless the group sets ``decoupled_weight_decay``. `muon_groups` splits a
    model so; `MuonWithAuxiliary` splits a plain list of parameters by their shape.

    Args:
        params: matrices, or parameter groups (each may say ``muon=False``).
        lr: eta; 1e-3 as torch (Keller uses 0.02 with s).
        weight_decay: lambda, decoupled; 0.1 as torch.
        momentum: mu; 0.95. Stored under ``momentum``, which OneCycleLR cycles.
        nesterov: the look-ahead M_t above.
        ns_coefficients: (a, b, c), `NS_COEFFICIENTS`.
        eps: the floor of ||M_t||_F in X_0.
        ns_steps: k, 5.
        adjust_lr_fn: None/"original", "match_rms_adamw" or "spectral_unclamped" (torch's).
        ns_dtype: the iteration's precision: "auto" (bfloat16 where the device multiplies it
            natively, float32 elsewhere: `ns_dtype_on`), "bfloat16" (torch's, wherever),
            "float32" or "float64".
        foreach: the fast path (default): on a GPU or with more than one CPU thread, the
            multi-tensor update with one batched Newton-Schulz per shape; on the CPU with
            one thread, one matrix at a time, which is faster there (`batches_matrices`).
            False: always the per-tensor reference loop.
        check_finite: raise FloatingPointError on a NaN/inf gradient before changing anything.

    State per parameter: ``momentum_buffer`` (B, or v in the Nesterov groups).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        *,
        ns_dtype: str = "auto",
        foreach: bool = True,
        check_finite: bool = False,
    ) -> None:
        name = type(self).__name__
        if len(ns_coefficients) != 3:
            raise ConfigError(f"{name}: ns_coefficients must be (a, b, c), got "
                              f"{ns_coefficients!r}")
        if int(ns_steps) != ns_steps or not 1 <= ns_steps < 100:
            raise ConfigError(f"{name}: invalid ns_steps = {ns_steps!r}; it must be a whole "
                              "number in [1, 100)")
        if adjust_lr_fn not in ADJUST_LR_FNS:
            raise ConfigError(f"{name}: invalid adjust_lr_fn = {adjust_lr_fn!r}; choose from "
                              f"{', '.join(map(str, ADJUST_LR_FNS))}")
        if ns_dtype not in NS_DTYPE_CHOICES:
            raise ConfigError(f"{name}: invalid ns_dtype = {ns_dtype!r}; choose from "
                              f"{', '.join(NS_DTYPE_CHOICES)}")
        super().__init__(
            params,
            lr,
            weight_decay,
            decoupled_weight_decay=False,  # for the Nesterov groups; Muon's is decoupled
            foreach=foreach,
            check_finite=check_finite,
            momentum=check_hyper(name, "momentum", momentum, high=1.0),
            nesterov=bool(nesterov),
            ns_coefficients=tuple(float(v) for v in ns_coefficients),
            eps=check_hyper(name, "eps", eps),
            ns_steps=int(ns_steps),
            adjust_lr_fn=adjust_lr_fn,
            ns_dtype=ns_dtype,
            muon=True,
        )

    @classmethod
    def build(
        cls, params: Iterable[Any], lr: float, momentum: float, weight_decay: float
    ) -> DescendOptimizer:
        """``momentum`` is mu (for the Nesterov groups too); the decay is decoupled."""
        return cls(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    @classmethod
    def params_of(cls, model: nn.Module) -> Any:
        """`muon_groups`: the hidden layers' filters take Muon, the rest Nesterov."""
        return muon_groups(model)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if not group["muon"]:
            return
        for p in group["params"]:
            if p.ndim < 2:
                # An unnamed parameter's label ends in its shape already; say it once.
                label = self._label(len(self.param_groups) - 1, p)
                shape = f"(shape {list(p.shape)})"
                label = label if label.endswith(shape) else f"{label} {shape}"
                raise ConfigError(
                    f"{type(self).__name__}: {label} is not a matrix; Muon orthogonalises "
                    "matrices (weights of linear and conv layers). Give biases, norms and the "
                    "classifier head to another optimizer with parameter groups: "
                    "{'params': [...], 'muon': False} takes Nesterov momentum here, and "
                    "muon_groups(model) or MuonWithAuxiliary (--optimizer muon) split a "
                    "model that way")

    def _update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        if not group["muon"]:  # the partner: torch's SGD(nesterov=True), v_1 = g_1
            bufs: list[Tensor | None] = [self.state[p].get("momentum_buffer") for p in params]
            step = _multi_tensor_momentum if group["foreach"] else _single_tensor_momentum
            step(params, grads, bufs, lr=group["lr"], beta=group["momentum"], tau=0.0,
                 nesterov=True, weight_decay=group["weight_decay"],
                 decoupled=group["decoupled_weight_decay"])
            for p, v in zip(params, bufs):
                self.state[p]["momentum_buffer"] = v
            return
        together = group["foreach"] and batches_matrices(params[0].device)
        update = _multi_tensor_muon if together else _single_tensor_muon
        update(
            params,
            grads,
            self._state_tensors(params, "momentum_buffer"),  # B_0 = 0
            lr=group["lr"],
            beta=group["momentum"],
            nesterov=group["nesterov"],
            weight_decay=group["weight_decay"],
            coefficients=group["ns_coefficients"],
            steps=group["ns_steps"],
            eps=group["eps"],
            adjust_lr_fn=group["adjust_lr_fn"],
            dtype=ns_dtype_on(group["ns_dtype"], params[0].device),
        )


@OPTIMIZERS.register("muon")
class MuonWithAuxiliary(Muon):
    """`Muon` for the matrices, Nesterov momentum for everything else: what ``--optimizer
    muon`` builds.

    A parameter group that does not say ``muon`` is split by shape: its parameters of two or
    more dimensions take Muon, the others (biases, norms) Nesterov momentum with the same lr
    and momentum. A plain list cannot tell the classifier head from a hidden layer; the
    trainer passes the model, whose head `muon_groups` gives to Nesterov, as airbench and
    Keller do (``create_optimizer("muon", model, lr)``).
    """

    compare_lr = 0.05  # O_t has singular values ~1: steps of ~eta s whatever the gradient
    # `descend optim paths` draws the point as a 1 x 2 matrix, whose O_t is 0.7-1.2 times
    # g / |g|: normalised descent with momentum, steps of about eta. Best of a sweep over
    # 1e-3..0.1 (500 steps); the saddle's is the others' 1e-2.
    path_lrs = {"rosenbrock": 3e-2, "beale": 3e-2, "saddle": 1e-2, "quadratic": 3e-2}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        if "muon" in param_group or not params:
            super().add_param_group(param_group)
            return
        # Named parameters come as (name, tensor): the shape is the tensor's.
        is_matrix = [(p[1] if isinstance(p, tuple) else p).ndim >= 2 for p in params]
        for kind in (True, False):
            chosen = [p for p, matrix in zip(params, is_matrix) if matrix == kind]
            if chosen:
                super().add_param_group({**param_group, "params": chosen, "muon": kind})


def muon_groups(model: nn.Module, partner_lr: float | None = None) -> list[dict[str, Any]]:
    """Parameter groups for `Muon`: the weights of the linear and conv layers take Muon,
    except the last such layer (the classifier head, in ``model.modules()`` order); every
    other parameter (biases, norms, the head, embeddings) takes Nesterov (``muon=False``), at
    ``partner_lr`` where given (``--partner-lr-scale``), else at the optimizer's lr.

    ``Muon(muon_groups(model), lr=0.02)``; the parameters come named, for error messages.
    """
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d,
                                                            nn.Conv3d))]
    filters = {id(m.weight) for m in layers[:-1]}
    named = list(model.named_parameters())
    partner = {} if partner_lr is None else {"lr": partner_lr}
    groups = [{"params": [(n, p) for n, p in named if id(p) in filters], "muon": True},
              {"params": [(n, p) for n, p in named if id(p) not in filters], "muon": False,
               **partner}]
    return [g for g in groups if g["params"]]


def batches_matrices(device: torch.device) -> bool:
    """Whether Muon's default path (``foreach=True``) updates a group's matrices together
    (foreach kernels, same-shaped matrices through one batched bfloat16 Newton-Schulz) or
    one at a time (the per-tensor loop). Both give the same bits; only the speed differs.

    On the CPU it turns on torch's thread count. resnet18's 21 matrices on a 2-core Xeon with
    AMX, shared (load average 2.7-5.4), interleaved (BENCHMARKS.md B1): with 1 thread, the
    batched Newton-Schulz takes the multi-tensor step to 1.18x its time one matrix at a time,
    and even unbatched that step is 1.10x the per-tensor loop's (likely the cache: the loop
    finishes each matrix's elementwise updates while it is still there); with 2 threads,
    batching takes it to 0.81x, and the batched multi-tensor step is 0.94x the loop's. So a
    CPU with one thread gets the loop. On a GPU the matrices go together (fewer, larger
    launches; not measured: no GPU here).
    """
    return device.type != "cpu" or torch.get_num_threads() > 1


def _single_tensor_muon(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor],
    *,
    lr: float,
    beta: float,
    nesterov: bool,
    weight_decay: float,
    coefficients: tuple[float, float, float],
    steps: int,
    eps: float,
    adjust_lr_fn: str | None,
    dtype: torch.dtype,
) -> None:
    for theta, g, b in zip(params, grads, bufs):
        weight_decay_single(theta, g, lr, weight_decay, True)  # theta <- (1 - eta lambda) theta
        ema_(b, g, beta)  # B_t = mu B_{t-1} + (1 - mu) G_t
        m = g.lerp(b, beta) if nesterov else b  # M_t = (1 - mu) G_t + mu B_t
        o = newton_schulz(as_matrix(m), steps, coefficients, eps, dtype)  # O_t ~ U V^T
        s = lr_scale(o.size(0), o.size(1), adjust_lr_fn)
        theta.add_(o.view_as(theta), alpha=-lr * s)  # theta_t = theta - eta s O_t


def _multi_tensor_muon(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor],
    *,
    lr: float,
    beta: float,
    nesterov: bool,
    weight_decay: float,
    coefficients: tuple[float, float, float],
    steps: int,
    eps: float,
    adjust_lr_fn: str | None,
    dtype: torch.dtype,
) -> None:
    for (thetas, gs, bs), _ in group_by_device_and_dtype([params, grads, bufs]):
        weight_decay_foreach(thetas, gs, lr, weight_decay, True)
        foreach_ema_(bs, gs, beta)
        ms = list(torch._foreach_lerp(gs, bs, beta)) if nesterov else bs
        # One Newton-Schulz per shape: same-shaped matrices (a ResNet's repeated blocks) go
        # through it as one batch, a few large matmuls instead of many small ones.
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, m in enumerate(ms):
            by_shape.setdefault(tuple(as_matrix(m).shape), []).append(i)
        os: dict[int, Tensor] = {}
        for indices in by_shape.values():
            if len(indices) == 1:
                os[indices[0]] = newton_schulz(as_matrix(ms[indices[0]]), steps, coefficients,
                                               eps, dtype)
            else:
                batch = torch.stack([as_matrix(ms[i]) for i in indices])
                os.update(zip(indices, newton_schulz(batch, steps, coefficients, eps, dtype)))
        # The step's scale depends on the shape: one foreach add per distinct scale.
        by_scale: dict[float, list[int]] = {}
        for i, o in os.items():
            by_scale.setdefault(lr_scale(o.size(0), o.size(1), adjust_lr_fn), []).append(i)
        for s, indices in by_scale.items():
            torch._foreach_add_([thetas[i] for i in indices],
                                [os[i].view_as(thetas[i]) for i in indices], alpha=-lr * s)
