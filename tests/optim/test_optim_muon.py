"""Muon against torch.optim.Muon, its Newton-Schulz iteration against the exact polar factor,
and the split of a model into Muon's matrices and Nesterov's rest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from descend import cpu
from descend.errors import ConfigError
from descend.models.cnn import CNN
from descend.models.fastres import FastRes
from descend.optim import Muon, MuonWithAuxiliary, create_optimizer, muon, muon_groups
from descend.optim.muon import batches_matrices, newton_schulz

STEPS = 300
# (rows, cols): tall, wide, square, and three alike (batched through one Newton-Schulz).
SHAPES = [(64, 32), (32, 96), (48, 48), (40, 24), (40, 24), (40, 24)]


def trajectories(make_ours, make_torch, shapes, reshape=lambda t: t, steps: int = STEPS):
    """Our optimizer on ``shapes`` and torch's on ``reshape`` of them, fed the same gradients,
    which depend on the weights (so that any difference compounds)."""
    gen = torch.Generator().manual_seed(0)
    ours = [torch.randn(s, generator=gen).requires_grad_() for s in shapes]
    theirs = [reshape(p.detach().clone()).requires_grad_() for p in ours]
    a, b = make_ours(ours), make_torch(theirs)
    for _ in range(steps):
        for p, q in zip(ours, theirs):
            g = 0.5 * p.detach() + torch.randn(p.shape, generator=gen)
            p.grad, q.grad = g, reshape(g.clone())
        a.step()
        b.step()
    return [reshape(p.detach()) for p in ours], [q.detach() for q in theirs]


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request: pytest.FixtureRequest) -> Iterator[int]:
    """torch's CPU threads for the test: Muon's default path batches same-shaped matrices
    through one Newton-Schulz with 2, and takes them one at a time with 1 (`batches_matrices`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    try:
        yield request.param
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "loop"])
@pytest.mark.parametrize("settings", [
    dict(lr=0.02),
    dict(lr=0.02, weight_decay=0.0, momentum=0.9, nesterov=False),
    dict(lr=0.01, adjust_lr_fn="match_rms_adamw"),
    dict(lr=0.01, adjust_lr_fn="spectral_unclamped", ns_steps=3),
], ids=["defaults", "classic", "match_rms_adamw", "spectral_unclamped-3-steps"])
def test_equals_torch_muon_on_matrices(foreach: bool, settings: dict, threads: int) -> None:
    # 300 steps on six matrices. The same tensor operations in the same order (bf16
    # Newton-Schulz included, torch's precision on every CPU): measured difference 0, bit for
    # bit, in both paths; the default batches the three alike matrices with 2 threads and is
    # the loop with 1.
    ours, theirs = trajectories(lambda p: Muon(p, **settings, foreach=foreach,
                                               ns_dtype="bfloat16"),
                                lambda p: torch.optim.Muon(p, **settings), SHAPES)
    for a, b, start in zip(ours, theirs, SHAPES):
        assert torch.equal(a, b), start
    assert any((a - torch.zeros(1)).abs().max() > 0 for a in ours)


@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "loop"])
def test_conv_filters_are_matrices_out_by_in_kh_kw(foreach: bool) -> None:
    # A 3x3 conv bank (16, 8, 3, 3) steps as torch's Muon steps the 16 x 72 matrix; a tall
    # one (64, 4, 3, 3) as the 64 x 36 matrix, with s = sqrt(64 / 36). Measured difference 0.
    shapes = [(16, 8, 3, 3), (64, 4, 3, 3), (8, 3, 1, 1)]
    ours, theirs = trajectories(lambda p: Muon(p, lr=0.02, foreach=foreach,
                                               ns_dtype="bfloat16"),
                                lambda p: torch.optim.Muon(p, lr=0.02), shapes,
                                reshape=lambda t: t.flatten(1))
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_the_nesterov_partner_is_torchs_sgd_nesterov() -> None:
    # An MLP (torch's Muon takes no conv filters): the hidden weights take torch's Muon, the
    # biases, norm and head torch's SGD(nesterov=True), which descend's Nesterov equals to
    # float rounding (it adds in two steps).
    def mlp() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.BatchNorm1d(32), nn.ReLU(),
                             nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))

    model, twin = mlp(), mlp()
    ours = create_optimizer("muon", model, lr=0.02, momentum=0.9, weight_decay=5e-4)
    ours.param_groups[0]["ns_dtype"] = "bfloat16"  # torch's, on every CPU
    groups = muon_groups(twin)
    theirs = [torch.optim.Muon([p for _, p in groups[0]["params"]], lr=0.02, momentum=0.9,
                               weight_decay=5e-4),
              torch.optim.SGD([p for _, p in groups[1]["params"]], lr=0.02, momentum=0.9,
                              nesterov=True, weight_decay=5e-4)]
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 3, 4, 4, generator=gen), torch.randint(0, 10, (64,), generator=gen)
    for _ in range(5):
        for m, opts in ((model, [ours]), (twin, theirs)):
            for opt in opts:
                opt.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            for opt in opts:
                opt.step()
    # Only 5 steps: once float rounding flips one bf16 digit of a Newton-Schulz input, the
    # two runs part (after 20 steps the first layer is 1% apart, after 200 30%), as any two
    # trainings do; 300 steps of each half alone are in the tests above and below.
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_the_partner_alone_over_300_steps() -> None:
    # Vectors in a muon=False group against torch's SGD(nesterov=True): rounding only,
    # measured at most 4.7e-7 apart (relative 4.8e-6) after 300 compounding steps.
    shapes = [(7,), (32,), ()]
    ours, theirs = trajectories(
        lambda p: Muon([{"params": p, "muon": False}], lr=0.02, momentum=0.9,
                       weight_decay=5e-4),
        lambda p: torch.optim.SGD(p, lr=0.02, momentum=0.9, nesterov=True, weight_decay=5e-4),
        shapes)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(128, 256), (256, 576), (576, 256)])
def test_newton_schulz_against_the_exact_polar_factor(shape: tuple[int, int]) -> None:
    # Gaussian matrices. Five steps of the quintic leave the singular values in about
    # [0.68, 1.14] by design, in either precision, so O is 0.17-0.21 (relative Frobenius)
    # from U V^T in both; bf16's rounding moves O by 0.011-0.012 from float32's, float32's
    # by 2e-6 from float64's. (A square Gaussian matrix has singular values near 0, which
    # five steps cannot lift: 64 x 64 ends with its smallest at 0.09 in float32, 0.07 bf16.)
    m = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    u, _, vh = torch.linalg.svd(m, full_matrices=False)
    polar = u @ vh
    exact = newton_schulz(m, dtype=torch.float64)
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        o = out[dtype] = newton_schulz(m.float(), dtype=dtype).double()
        s = torch.linalg.svdvals(o)
        assert 0.67 < s.min() and s.max() < 1.17, (dtype, s.min(), s.max())
        assert (o - polar).norm() / polar.norm() < 0.22
    f32, bf16 = out[torch.float32], out[torch.bfloat16]
    assert (f32 - exact).norm() / exact.norm() < 1e-5
    assert (bf16 - f32).norm() / f32.norm() < 0.02


@pytest.mark.parametrize("native", [True, False], ids=["native-bf16", "emulated-bf16"])
def test_the_default_precision_is_bfloat16_only_where_the_cpu_multiplies_it(
        native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # Emulated, bfloat16 Newton-Schulz is 18-88x slower than float32 (an AVX2-only EPYC), and
    # no closer to U V^T; "auto" takes float32 there and torch's bfloat16 where it is native.
    monkeypatch.setattr(cpu, "_this_cpu_has_bf16", lambda: native)
    on_cpu = torch.device("cpu")
    assert muon.ns_dtype_on("auto", on_cpu) is (torch.bfloat16 if native else torch.float32)
    assert muon.ns_dtype_on("auto", torch.device("cuda")) is torch.bfloat16
    assert muon.ns_dtype_on("bfloat16", on_cpu) is torch.bfloat16  # asked for: wherever
    assert muon.ns_dtype_on("float32", torch.device("cuda")) is torch.float32
    # A default Muon steps as the precision it resolves to, bit for bit, and not as the other.
    runs = {dtype: trajectories(lambda p, d=dtype: Muon(p, lr=0.02, ns_dtype=d),
                                lambda p: torch.optim.SGD(p, lr=0.0), SHAPES[:2], steps=3)[0]
            for dtype in ("auto", "bfloat16", "float32")}
    same, other = ("bfloat16", "float32") if native else ("float32", "bfloat16")
    assert all(torch.equal(a, b) for a, b in zip(runs["auto"], runs[same]))
    assert not all(torch.equal(a, b) for a, b in zip(runs["auto"], runs[other]))
    assert Muon([torch.zeros(2, 2)]).defaults["ns_dtype"] == "auto"


def test_newton_schulz_batched_equals_one_by_one(threads: int) -> None:
    ms = torch.randn(3, 40, 24, generator=torch.Generator().manual_seed(0))
    batched = newton_schulz(ms)
    for m, o in zip(ms, batched):
        assert torch.equal(newton_schulz(m), o)


def test_the_default_path_goes_together_only_with_threads_to_spare(threads: int) -> None:
    # Measured (BENCHMARKS.md B1): with 1 CPU thread the per-tensor loop is the faster path.
    assert batches_matrices(torch.device("cpu")) is (threads > 1)
    assert batches_matrices(torch.device("cuda"))  # whatever the CPU's threads


def test_a_vector_is_refused_with_what_to_do() -> None:
    layer = nn.Linear(4, 3)
    # Named or not, the message says which parameter, its shape once, and what to do.
    for params, label in [(layer.named_parameters(), "parameter 'bias' (shape [3])"),
                          ([layer.weight, layer.bias],
                           "parameter 1 of param group 0 (shape [3])")]:
        with pytest.raises(ConfigError, match=r"'muon': False.*muon_groups\(model\)") as err:
            Muon(params, lr=0.02)
        assert str(err.value).startswith(f"Muon: {label} is not a matrix; "), str(err.value)
        assert str(err.value).count("[3]") == 1, str(err.value)
    with pytest.raises(ConfigError, match="invalid ns_dtype"):
        Muon([layer.weight], ns_dtype="float16")
    with pytest.raises(ConfigError, match="invalid adjust_lr_fn"):
        Muon([layer.weight], adjust_lr_fn="sqrt")
    # With the vector in a group of its own, it takes Nesterov momentum.
    opt = Muon([{"params": [layer.weight]}, {"params": [layer.bias], "muon": False}], lr=0.02)
    assert [g["muon"] for g in opt.param_groups] == [True, False]


@pytest.mark.parametrize("model", [FastRes(num_classes=10), CNN(num_classes=10)],
                         ids=["fastres", "cnn"])
def test_muon_groups_give_the_filters_to_muon_and_the_rest_to_nesterov(model: nn.Module) -> None:
    opt = create_optimizer("muon", model, lr=0.05)
    assert type(opt) is MuonWithAuxiliary
    muon, rest = opt.param_groups
    assert muon["muon"] and not rest["muon"]
    assert all(p.ndim == 4 for p in muon["params"])  # the conv filters, the head's not
    assert all(name.startswith("head") or p.ndim == 1
               for name, p in zip(rest["param_names"], rest["params"]))
    assert any(name.startswith("head") and p.ndim == 2
               for name, p in zip(rest["param_names"], rest["params"]))
    assert len(muon["params"]) + len(rest["params"]) == len(list(model.parameters()))


def test_a_plain_list_is_split_by_shape() -> None:
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    opt = create_optimizer("muon", model.parameters(), lr=0.05)
    assert [[tuple(p.shape) for p in g["params"]] for g in opt.param_groups] == [
        [(8, 5), (2, 8)], [(8,), (8,), (8,), (2,)]]


def test_the_partner_takes_a_rate_of_its_own() -> None:
    model = FastRes(num_classes=10)
    opt = Muon(muon_groups(model, partner_lr=0.5), lr=0.05)
    assert [(g["muon"], g["lr"]) for g in opt.param_groups] == [(True, 0.05), (False, 0.5)]
