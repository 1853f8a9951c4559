"""What an audit finds, from out-of-sample probabilities and embeddings (`descend.audit.oos`).

- **Wrong labels**: confident learning (Northcutt et al., 2021) through cleanlab, the field's
  implementation: it estimates the joint distribution of given and true labels from the
  out-of-sample probabilities with per-class confidence thresholds, prunes the images that the
  estimate says are mislabelled (``prune_by_noise_rate``), and ranks them by self-confidence
  (the probability of the given label). The class each seems to be is the argmax.
- **Strays** (pictures of no class: a logo, a digit among photos): images on which the
  out-of-sample model, once calibrated, spreads its belief almost evenly over every class: a
  normalized entropy ``H(p) / ln C = -sum_c p_c ln p_c / ln C`` of at least `STRAY_ENTROPY`
  (1: uniform). Calibrated by temperature scaling (Guo et al. 2017): ``p_c ~ p_c^(1/T)`` with
  the one T that best predicts the given labels (least log loss), because label smoothing and
  short training leave models under-confident, and an under-confident model spreads its belief
  over every image (B13's models needed T = 0.47-0.71). Embedding distance fails here: strays
  collected by one keyword resemble each other, and the embeddings come from a model that
  trained on some of them. A rule relative to the spread of all the scores (a Tukey fence)
  fails too: it flagged nothing under a weak model and the long tail of hard photos (5% of
  CIFAR-10) under a strong one (B13). And the question is only asked of a model that can answer
  it: where the median image is itself spread (median evenness above `STRAY_GATE`), the model
  knows too little to tell a stray from a photo it cannot place yet, and no image is called a
  stray (the report says so). The two-class folder of B13 (a 63% model, T = 2.7: every
  prediction near 50/50) flagged 247 of its 264 photos without this gate.
- **Near duplicates across splits**: two images whose 64-bit perceptual hashes (``imagehash``,
  as the crawler uses) differ in at most `MAX_HASH_DISTANCE` bits. Candidates are each image's
  nearest neighbours by embedding (the out-of-sample model's last features) and the images that
  share a 16-bit quarter of their hash (every pair within 3 bits, most within 6), so that
  50,000 images need no 1.25 billion comparisons. The embedding's cosine similarity is reported
  beside each pair, not trusted alone: on CIFAR-10, different photos came as close as 0.998
  under a model of 31% accuracy, while every resized or recompressed copy was within 4 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from descend.audit.records import StrayRule

# Bits two hashes of one picture differ by, resized or recompressed (measured on 2,000 variants
# of the sample's photos: descend/crawl/dedup.py).
MAX_HASH_DISTANCE = 6
NEIGHBOURS = 5  # candidates per image from the embedding search
# Calibrated normalized entropy from which an image fits no class. Measured on two audits
# (B13): with a 77%-accurate model on a folder with 500 strays among 14,700 images, 0.85
# flagged 716 (precision 0.39, recall 0.56), 0.90 flagged 288 (0.54, 0.31), 0.94 flagged 68
# (0.62, 0.08); with 92%-accurate models on CIFAR-10 itself (60,000 photos, no strays), 0.85
# flagged 21 (0.03%), 0.90 one. The Tukey fence on log scores it replaces: 249 (0.54, 0.27)
# and 2,979 (5.0%). Chosen on these two; the two-class folder of B13 was the held-out check.
STRAY_ENTROPY = 0.85
# Median evenness above which strays are not judged: a model unsure of the typical image. The
# audits of B13 had medians of 0.02 (CIFAR-10), 0.34 (ten classes, 77%) and 0.97 (two
# classes, 63%); the gate was set after the last one, at the middle of the scale.
STRAY_GATE = 0.5


@dataclass
class Flagged:
    """An image of the pool that a rule flagged; `descend.audit.report` makes it a `Suspect`
    of the audit, with its path and class names."""

    index: int  # in the pool
    kind: str  # "label" or "outlier"
    score: float  # how sure the finding is, 0-1: higher first
    suggested: int | None  # the class it seems to be (None: none fits)


@dataclass
class Pair:
    """Two images of the pool that are one picture; a `Duplicate` of the audit."""

    a: int
    b: int
    hash_distance: int
    cosine: float


@dataclass
class Findings:
    flagged: list[Flagged]
    pairs: list[Pair]
    noise_estimate: float  # share of labels confident learning estimates to be wrong
    stray_rule: StrayRule


def label_issues(labels: np.ndarray, probabilities: np.ndarray) -> tuple[list[Flagged], float]:
    """Likely wrong labels, most certain first, and the estimated share of wrong labels."""
    from cleanlab.count import num_label_issues
    from cleanlab.filter import find_label_issues

    ranked = find_label_issues(labels, probabilities,
                               return_indices_ranked_by="self_confidence")
    estimate = num_label_issues(labels, probabilities) / max(1, len(labels))
    suggested = probabilities.argmax(1)
    return [Flagged(int(i), "label", float(1 - probabilities[i, labels[i]]), int(suggested[i]))
            for i in ranked], float(estimate)


def temperature(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The T of temperature scaling: argmin_T of the mean -log softmax(log p / T)[label]."""
    from scipy.optimize import minimize_scalar

    logs = np.log(np.maximum(probabilities, 1e-12))
    rows = np.arange(len(labels))

    def loss(log_t: float) -> float:
        z = logs / np.exp(log_t)
        z = z - z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[rows, labels]))

    return float(np.exp(minimize_scalar(loss, bounds=(-4, 4), method="bounded").x))


def strays(labels: np.ndarray, probabilities: np.ndarray) -> tuple[list[Flagged], StrayRule]:
    """Images that fit no class, most even first, and how the rule went (see the module
    docstring): the temperature, the median evenness and whether strays were judged."""
    classes = probabilities.shape[1]
    if classes < 2 or len(labels) == 0:
        return [], StrayRule(judged=False)
    t = temperature(labels, probabilities)
    z = np.log(np.maximum(probabilities, 1e-12)) / t
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    even = -(p * np.log(np.maximum(p, 1e-12))).sum(1) / np.log(classes)
    median = float(np.median(even))
    rule = StrayRule(judged=median <= STRAY_GATE, temperature=round(t, 3),
                     median_evenness=round(median, 3), level=STRAY_ENTROPY, gate=STRAY_GATE)
    if not rule.judged:
        return [], rule
    return [Flagged(int(i), "outlier", float(even[i]), None)
            for i in np.argsort(-even) if even[i] >= STRAY_ENTROPY], rule


def find_suspects(labels: torch.Tensor, probabilities: torch.Tensor,
                  covered: torch.Tensor | None = None
                  ) -> tuple[list[Flagged], float, StrayRule]:
    """Wrong labels and strays in one list, ranked by score (an image both is a stray), the
    label noise estimate, and how the stray rule went. Only the rows of ``covered`` (default:
    all) are out of sample, and judged."""
    rows = (torch.nonzero(covered).flatten() if covered is not None
            else torch.arange(len(labels)))
    y, p = labels[rows].numpy(), probabilities[rows].double().numpy()
    p = p / p.sum(1, keepdims=True)
    wrong, estimate = label_issues(y, p)
    outliers, rule = strays(y, p)
    stray = {s.index for s in outliers}
    merged = outliers + [s for s in wrong if s.index not in stray]
    for s in merged:  # back to places in the pool
        s.index = int(rows[s.index])
    return sorted(merged, key=lambda s: -s.score), estimate, rule


def phashes(images: torch.Tensor) -> np.ndarray:
    """64-bit perceptual hashes (``imagehash.phash``) of uint8 images (N, C, H, W)."""
    import imagehash
    from PIL import Image

    out = np.zeros(len(images), dtype=np.uint64)
    for i, img in enumerate(images):
        arr = img.permute(1, 2, 0).numpy()
        picture = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
        out[i] = np.uint64(int(str(imagehash.phash(picture)), 16))
    return out


def near_duplicates(hashes: np.ndarray, embeddings: torch.Tensor, splits: list[str],
                    cross_split_only: bool = True) -> list[Pair]:
    """Pairs that are one picture (see the module docstring), across splits unless asked."""
    n = len(hashes)
    candidates: set[tuple[int, int]] = set()
    k = min(NEIGHBOURS + 1, n)
    for start in range(0, n, 1024):  # blocks keep the similarity matrix small
        sims = embeddings[start:start + 1024] @ embeddings.T
        _, nearest = sims.topk(k, dim=1)
        for row, cols in enumerate(nearest.tolist()):
            i = start + row
            candidates.update((min(i, j), max(i, j)) for j in cols if j != i)
    for quarter in range(4):  # pigeonhole: 3 differing bits leave one quarter equal
        buckets: dict[int, list[int]] = {}
        for i, h in enumerate(((hashes >> np.uint64(16 * quarter)) & np.uint64(0xFFFF)).tolist()):
            buckets.setdefault(h, []).append(i)
        for same in buckets.values():
            if len(same) <= 64:  # a crowded quarter (a flat picture's) is the embedding's job
                candidates.update((a, b) for x, a in enumerate(same) for b in same[x + 1:])
    found = []
    bits = [int(h) for h in hashes.tolist()]
    for a, b in sorted(candidates):
        if cross_split_only and splits[a] == splits[b]:
            continue
        distance = (bits[a] ^ bits[b]).bit_count()
        if distance <= MAX_HASH_DISTANCE:
            found.append(Pair(a, b, distance, float(embeddings[a] @ embeddings[b])))
    return found
