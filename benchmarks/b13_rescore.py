"""B13, the stray rule re-scored: the rules tried, on the out-of-sample probabilities an audit
saved (``evidence.pt``), with no model trained again.

For a folder B13's script built, the truth is in the file names (``stray_*``); for any other
dataset (all of CIFAR-10, say) only the number flagged is printed.

    python benchmarks/b13_rescore.py --data imagefolder:/tmp/b13q/faulty --image-size 32
    python benchmarks/b13_rescore.py --data imagefolder:../shared/datasets/cifar10 \
        --image-size 32 --evidence /tmp/a50/evidence.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def evenness(p: np.ndarray) -> np.ndarray:
    """Normalized entropy of each row."""
    return -(p * np.log(np.maximum(p, 1e-12))).sum(1) / np.log(p.shape[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="the dataset the audit judged")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--evidence", help="default: the folder's .descend-audit/evidence.pt")
    args = p.parse_args()
    from cleanlab.outlier import OutOfDistribution

    from descend.audit.findings import STRAY_ENTROPY, STRAY_GATE, temperature
    from descend.audit.oos import Pool
    from descend.config import TrainConfig
    from descend.data.datasets import load_dataset
    from descend.data.paths import image_folder

    cfg = TrainConfig(data=args.data, image_size=args.image_size)
    evidence = torch.load(args.evidence or image_folder(args.data) / ".descend-audit" /
                          "evidence.pt", weights_only=False)
    labels = evidence["labels"].numpy()
    probs = evidence["probabilities"].double().numpy()
    probs /= probs.sum(1, keepdims=True)
    pool = Pool.of(load_dataset(cfg.data, cfg.data_root, cfg.cache_dir, cfg.data_options()))
    assert np.array_equal(pool.images.labels.numpy(), labels), "not the audit of this dataset"
    paths = pool.images.paths or []
    truth = np.array(["stray_" in Path(p).name for p in paths]) if paths else None

    t = temperature(labels, probs)
    z = np.log(np.maximum(probs, 1e-12)) / t
    calibrated = np.exp(z - z.max(1, keepdims=True))
    calibrated /= calibrated.sum(1, keepdims=True)
    raw, cal = evenness(probs), evenness(calibrated)
    logs = np.log(np.maximum(OutOfDistribution().fit_score(pred_probs=probs, labels=labels),
                             1e-12))
    q1, q3 = np.quantile(logs, [0.25, 0.75])
    rules = {"Tukey fence on log OOD scores": logs < q1 - 1.5 * (q3 - q1)}
    rules |= {f"evenness >= {level}, uncalibrated": raw >= level for level in (0.85, 0.9, 0.94)}
    rules |= {f"calibrated evenness >= {level}": cal >= level for level in (0.85, 0.9, 0.94)}
    print(f"{len(labels)} images; temperature {t:.3f}; median calibrated evenness "
          f"{np.median(cal):.3f} (strays judged at most {STRAY_GATE}; level {STRAY_ENTROPY})")
    for name, flagged in rules.items():
        line = f"{name:34s} flagged {int(flagged.sum()):6d} ({flagged.mean():.2%})"
        if truth is not None and truth.any():
            hits = int((flagged & truth).sum())
            line += (f"  true {hits} of {int(truth.sum())}: precision "
                     f"{hits / max(1, int(flagged.sum())):.2f}, recall {hits / truth.sum():.2f}")
        print(line, flush=True)


if __name__ == "__main__":
    main()
