"""B1: optimizer step time, descend's optimizers against their torch.optim counterparts.

Each pair runs on its own copy of a ResNet-18-sized parameter list (torchvision's resnet18,
about 11.7M parameters, random fixed gradients); torch runs with ``foreach=True``, its fast
multi-tensor path (on CPU torch would otherwise pick the slower per-tensor loop). Repeats of
ours and torch's are interleaved, alternating which goes first, so that load from other
processes hits both alike; the ratio is the median of the per-repeat ratios ours / torch.

    python benchmarks/b1_optimizer_step.py              # full run
    python benchmarks/b1_optimizer_step.py --quick      # a smoke run, seconds
    python benchmarks/b1_optimizer_step.py --device cuda
    python benchmarks/b1_optimizer_step.py --threads 1  # CPU shared with other jobs
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision

from descend.optim.adagrad import AdaGrad
from descend.optim.adam import Adam, AdamW
from descend.optim.momentum import Momentum, Nesterov
from descend.optim.muon import Muon
from descend.optim.rmsprop import RMSProp
from descend.optim.sgd import SGD

Factory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


@dataclass
class Pair:
    name: str
    ours: Factory
    theirs: Factory
    note: str


def pairs() -> list[Pair]:
    t = torch.optim
    return [
        Pair("sgd", lambda p: SGD(p, lr=0.01), lambda p: t.SGD(p, lr=0.01, foreach=True),
             "SGD"),
        Pair("momentum", lambda p: Momentum(p, lr=0.01, momentum=0.9),
             lambda p: t.SGD(p, lr=0.01, momentum=0.9, dampening=0.9, foreach=True),
             "SGD(momentum=0.9, dampening=0.9)"),
        Pair("nesterov", lambda p: Nesterov(p, lr=0.01, momentum=0.9),
             lambda p: t.SGD(p, lr=0.01, momentum=0.9, nesterov=True, foreach=True),
             "SGD(momentum=0.9, nesterov=True); ours EMA form"),
        Pair("nesterov (dampening=0)",
             lambda p: Nesterov(p, lr=0.01, momentum=0.9, dampening=0.0),
             lambda p: t.SGD(p, lr=0.01, momentum=0.9, nesterov=True, foreach=True),
             "same math as torch"),
        Pair("adagrad (eps inside)", lambda p: AdaGrad(p, lr=0.01),
             lambda p: t.Adagrad(p, lr=0.01, foreach=True), "Adagrad"),
        Pair("adagrad (eps outside)", lambda p: AdaGrad(p, lr=0.01, eps_inside=False),
             lambda p: t.Adagrad(p, lr=0.01, foreach=True), "Adagrad"),
        Pair("rmsprop (eps inside)", lambda p: RMSProp(p, lr=0.01, beta=0.9),
             lambda p: t.RMSprop(p, lr=0.01, alpha=0.9, foreach=True), "RMSprop(alpha=0.9)"),
        Pair("rmsprop (eps outside)", lambda p: RMSProp(p, lr=0.01, beta=0.9, eps_inside=False),
             lambda p: t.RMSprop(p, lr=0.01, alpha=0.9, foreach=True), "RMSprop(alpha=0.9)"),
        Pair("adam", lambda p: Adam(p, lr=1e-3), lambda p: t.Adam(p, lr=1e-3, foreach=True),
             "Adam"),
        Pair("adamw", lambda p: AdamW(p, lr=1e-3, weight_decay=0.01),
             lambda p: t.AdamW(p, lr=1e-3, weight_decay=0.01, foreach=True), "AdamW"),
        Pair("adam, check_finite=True", lambda p: Adam(p, lr=1e-3, check_finite=True),
             lambda p: t.Adam(p, lr=1e-3, foreach=True), "Adam (ours checks grads)"),
        Pair("sgd, check_finite=True", lambda p: SGD(p, lr=0.01, check_finite=True),
             lambda p: t.SGD(p, lr=0.01, foreach=True), "SGD (ours checks grads)"),
        # torch's Muon has no foreach path and takes 2-D parameters only: both get resnet18's
        # 21 conv and linear weights as out x rest matrices (11.2M of the 11.7M values).
        # The same work: Newton-Schulz in bfloat16 (torch's) on every CPU.
        Pair("muon", lambda p: Muon(as_matrices(p), lr=0.02, ns_dtype="bfloat16"),
             lambda p: t.Muon(as_matrices(p), lr=0.02), "Muon (weights as matrices)"),
        # Ours by default batches same-shaped matrices through one Newton-Schulz with more than
        # one thread, and is the per-tensor loop (one matrix at a time, as torch) with one.
        Pair("muon (per-tensor loop)",
             lambda p: Muon(as_matrices(p), lr=0.02, foreach=False, ns_dtype="bfloat16"),
             lambda p: t.Muon(as_matrices(p), lr=0.02), "Muon (weights as matrices)"),
        # What a user gets: ns_dtype "auto", float32 on a CPU that emulates bfloat16.
        Pair("muon (default precision)", lambda p: Muon(as_matrices(p), lr=0.02),
             lambda p: t.Muon(as_matrices(p), lr=0.02), "Muon (bfloat16 Newton-Schulz)"),
    ]


def as_matrices(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Leaf copies of the parameters with two or more dimensions as out x rest matrices, with
    their gradients: what torch's Muon accepts of a conv net."""
    matrices = []
    for p in params:
        if p.ndim >= 2:
            q = p.detach().flatten(1).clone().requires_grad_(True)
            q.grad = p.grad.flatten(1).clone()  # type: ignore[union-attr]
            matrices.append(q)
    return matrices


def resnet18_params(device: torch.device) -> list[torch.Tensor]:
    """Leaf copies of resnet18's parameters with fixed random gradients (small, so that
    thousands of steps stay finite)."""
    gen = torch.Generator().manual_seed(0)
    params = []
    for p in torchvision.models.resnet18().parameters():
        q = p.detach().clone().to(device).requires_grad_(True)
        q.grad = (torch.randn(p.shape, generator=gen) * 1e-3).to(device)
        params.append(q)
    return params


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    lines = [
        f"CPU: {cpu}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}",
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"python {platform.python_version()}",
        f"device: {device}",
    ]
    if torch.cuda.is_available():
        lines.append(f"GPU: {torch.cuda.get_device_name(0)}")
    else:
        lines.append("GPU: none")
    return "\n".join(lines)


def time_steps(opt: torch.optim.Optimizer, steps: int, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    sync()
    return (time.perf_counter() - start) / steps


def measure(pair: Pair, device: torch.device, repeats: int, steps: int, warmup: int
            ) -> tuple[float, float, float]:
    ours = pair.ours(resnet18_params(device))
    theirs = pair.theirs(resnet18_params(device))
    for opt in (ours, theirs):
        time_steps(opt, warmup, device)  # state allocation, first-step paths, caches
    t_ours, t_theirs, ratios = [], [], []
    for r in range(repeats):
        # Alternate the order so neither always runs right after the other's memory traffic.
        if r % 2 == 0:
            a = time_steps(ours, steps, device)
            b = time_steps(theirs, steps, device)
        else:
            b = time_steps(theirs, steps, device)
            a = time_steps(ours, steps, device)
        t_ours.append(a)
        t_theirs.append(b)
        ratios.append(a / b)
    return statistics.median(t_ours), statistics.median(t_theirs), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="steps per timed repeat")
    parser.add_argument("--only", nargs="*", default=None, help="names of pairs to run")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch CPU threads (default: torch's choice). On a machine shared with other "
        "jobs, 1 avoids the stalls of oversubscribed thread pools, which swamp the ratio.",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = args.repeats or (3 if args.quick else 21)
    steps = args.steps or (2 if args.quick else 5)
    warmup = 1 if args.quick else 3

    print(machine(device))
    n = sum(p.numel() for p in resnet18_params(device))
    print(f"parameters: resnet18, {len(resnet18_params(device))} tensors, {n:,} values, float32")
    print(f"repeats {repeats} x {steps} steps, warm-up {warmup}; ratio = median(ours/torch)\n")
    print(f"| {'optimizer':<26} | {'ours ms':>8} | {'torch ms':>8} | {'ratio':>5} | torch.optim "
          "counterpart (foreach=True) |")
    print(f"|{'-' * 28}|{'-' * 10}|{'-' * 10}|{'-' * 7}|{'-' * 40}|")
    for pair in pairs():
        if args.only and pair.name not in args.only:
            continue
        ours, theirs, ratio = measure(pair, device, repeats, steps, warmup)
        print(f"| {pair.name:<26} | {ours * 1e3:8.2f} | {theirs * 1e3:8.2f} | {ratio:5.2f} | "
              f"{pair.note} |", flush=True)


if __name__ == "__main__":
    main()
