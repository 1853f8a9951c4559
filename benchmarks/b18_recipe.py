"""B18: fastres's training recipe, measured by accuracy per epoch (no time budget).

    python benchmarks/b18_recipe.py --data ../shared/datasets --widths 32-64-128 --epochs 5 \
        --seeds 1 [--recipe SUBSTRING] [--out /tmp/descend-b18]

Each recipe is a set of `descend train` flags on top of the defaults; every run trains CIFAR-10
for ``--epochs`` epochs of fastres at ``--widths`` with a fixed seed, so two recipes differ only
in their flags. It prints, per recipe, the final test accuracy of each seed (the last epoch's,
not the best epoch's: `results.final_test_acc`), their mean and the seconds of training steps
per epoch. The recipe that wins at equal epochs needs fewer epochs for a given accuracy, which
is what a time budget buys. BENCHMARKS.md B18 has the figures and the machine they came from.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402
from results import final_test_acc  # noqa: E402

MUON = "--optimizer muon --schedule linear --warmup-epochs 0"
RECIPES = {  # name: the flags it adds to `descend train`
    "nesterov onecycle (0.3 recipe)": "",  # the defaults of the checkout it runs from
    # fastres's recipe when issue 28 was filed: weight decay 5e-4 and a random flip
    "issue 28's starting recipe": "--weight-decay 5e-4 --augment crop:2,hflip",
    "muon 0.2 onecycle, shared lr": "--optimizer muon --lr 0.2",
    "muon 0.2 linear, partner x5": f"{MUON} --lr 0.2 --partner-lr-scale 5",
    "muon 0.2 linear, partner x5, mom 0.8": f"{MUON} --lr 0.2 --partner-lr-scale 5 "
                                            "--momentum 0.8",
    "muon 0.2 linear, partner x2.5": f"{MUON} --lr 0.2 --partner-lr-scale 2.5",
    "muon 0.2 linear, partner x10": f"{MUON} --lr 0.2 --partner-lr-scale 10",
    "muon 0.3 linear, partner x3.3": f"{MUON} --lr 0.3 --partner-lr-scale 3.3",
    "muon 0.2 linear, partner x10, batch 512": f"{MUON} --lr 0.2 --partner-lr-scale 10 "
                                              "--batch-size 512",
    "muon 0.2 linear, partner x5, warm-up 0.5": "--optimizer muon --schedule linear "
                                                "--warmup-epochs 0.5 --lr 0.2 "
                                                "--partner-lr-scale 5",
    "nesterov linear": "--schedule linear --warmup-epochs 0.5",
    "nesterov, dirac init": "--model-arg dirac=true",
    "nesterov, batch 512": "--batch-size 512",
    "nesterov, ema 0.99": "--ema-decay 0.99",
    "nesterov, weight decay 1e-3": "--weight-decay 1e-3",
    "nesterov, weight decay 2e-3": "--weight-decay 2e-3",
    "nesterov, weight decay 2.5e-4": "--weight-decay 2.5e-4",
    "nesterov, weight decay 1e-4": "--weight-decay 1e-4",
    "nesterov, alternating flip": "--augment crop:2,alternating-flip",
    "nesterov, batch 128": "--batch-size 128",
    "nesterov, alternating flip, batch 128": "--augment crop:2,alternating-flip --batch-size 128",
    "nesterov, reflect crop": "--augment reflect-crop:2,alternating-flip",
    "nesterov, lr 0.7": "--lr 0.7",
    "nesterov, lr 1.4": "--lr 1.4",
    "nesterov, label smoothing 0.1": "--label-smoothing 0.1",
    "nesterov, label smoothing 0.3": "--label-smoothing 0.3",
    "muon 0.3 linear, partner x3.3, dirac init": f"{MUON} --lr 0.3 --partner-lr-scale 3.3 "
                                                 "--model-arg dirac=true",
}


def train(flags: list[str]) -> tuple[dict[str, object], float]:
    """`descend train FLAGS --json`: its JSON result and wall seconds."""
    cmd = [sys.executable, "-m", "descend", "train", *flags, "--no-progress", "--json"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout[proc.stdout.index("{"):]), time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/datasets")
    p.add_argument("--widths", default="32-64-128")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--recipe", action="append", default=[],
                   help="run only the recipe of this name, or those whose name contains this "
                   "(repeatable)")
    p.add_argument("--out", default="/tmp/descend-b18")
    p.add_argument("--final-only", action="store_true",
                   help="validate the last epoch alone (--val-every 0): no per-epoch curve, "
                   "and no validation passes in between (14 s an epoch at 64-256-256)")
    a = p.parse_args()
    print(describe(), flush=True)
    widths = f"widths=[{a.widths.replace('-', ',')}]"
    chosen = {n: f for n, f in RECIPES.items()  # a whole name picks that recipe alone
              if not a.recipe or any(s == n or (s not in RECIPES and s in n) for s in a.recipe)}
    print(f"CIFAR-10, fastres {a.widths}, {a.epochs} epochs, seeds "
          f"{a.first_seed}..{a.first_seed + a.seeds - 1}", flush=True)
    accs: dict[str, list[float]] = {n: [] for n in chosen}
    per_epoch: dict[str, list[float]] = {n: [] for n in chosen}
    for seed in range(a.first_seed, a.first_seed + a.seeds):  # seeds outer: a cut run is fair
        for k, (name, flags) in enumerate(chosen.items()):
            result, _ = train(["--data", "cifar10", "--data-root", str(Path(a.data).resolve()),
                               "--epochs", str(a.epochs), "--model-arg", widths, "--seed",
                               str(seed), "--out", f"{a.out}/{k}-{seed}", "--overwrite",
                               *(["--val-every", "0"] if a.final_only else []), *flags.split()])
            history = result["history"]
            accs[name].append(final_test_acc(result))
            per_epoch[name].append(statistics.mean(r["seconds"] for r in history))  # type: ignore[union-attr]
            curve = " ".join("-" if r["val_acc"] is None  # type: ignore[index]
                             else f"{100 * r['val_acc']:.2f}" for r in history)  # type: ignore[index]
            print(f"  {name} seed {seed}: {100 * accs[name][-1]:.2f}%  (per epoch: {curve})",
                  flush=True)
    for name, flags in chosen.items():
        got = accs[name]
        print(f"{name:<44} mean {100 * statistics.mean(got):.2f}%  min {100 * min(got):.2f}  "
              f"max {100 * max(got):.2f}  {statistics.mean(per_epoch[name]):.1f} s/epoch  "
              f"[{flags or 'defaults'}]", flush=True)

if __name__ == "__main__":
    main()
