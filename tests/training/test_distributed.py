"""Training under torchrun (SPEC section 6): each rank its shard, metrics summed over the ranks,
rank 0 alone writing, and checkpoints, resumes and evaluation that mean what they mean in one
process. The end-to-end tests start two CPU processes with torch's own launcher."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from descend.data.augment import parse_augment
from descend.data.batching import (
    LoaderOptions,
    Normalize,
    epoch_seed,
    shard_block,
    shard_permutation,
)
from descend.data.datasets import load_dataset
from descend.data.loader import BatchLoader, make_loader
from descend.data.splits import ImageTensors
from descend.errors import ConfigError
from descend.evaluation.evaluate import evaluate_checkpoint
from descend.evaluation.predict import Classifier
from descend.runtime.checkpoint import read_checkpoint
from descend.training.fitting import distributed
from descend.training.fitting.callbacks import (
    Checkpoint,
    EarlyStopping,
    MetricsLog,
    RankSync,
    rank_callbacks,
)
from descend.training.keeping.run_folder import RunFolder
from descend.training.trainer import train
from tests.conftest import COLORS, write_class_images

SCRIPT = Path(__file__).parents[1] / "support" / "ddp_train.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            "2"]
EPOCHS = 3
# A convolutional net (BatchNorm buffers, channels-last weights) with a weight EMA: what the
# ranks must agree on beyond the gradients that DDP averages.
RECIPE = ["--model", "cnn", "--ema-decay", "0.9"]
EXPECTED_FILES = [".lock", "best.pt", "config.json", "curves.png", "last.pt", "metrics.csv",
                  "train.log"]


# --- the shards, unit by unit -----------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 7, 48, 50])
@pytest.mark.parametrize("world_size", [2, 3, 4])
@pytest.mark.parametrize("drop_last", [True, False])
def test_shards_of_a_permutation_are_disjoint_and_the_same_size(n: int, world_size: int,
                                                                 drop_last: bool) -> None:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    shares = [shard_permutation(order, r, world_size, drop_last).tolist()
              for r in range(world_size)]
    assert len({len(s) for s in shares}) == 1, "every rank must take the same number of steps"
    dealt = [i for s in shares for i in s]
    if drop_last:
        assert len(dealt) == len(set(dealt)) == n - n % world_size  # disjoint, few left out
    else:
        assert set(dealt) == set(range(n))  # all of them, the first few twice
        assert len(dealt) - n == -n % world_size
    assert shard_permutation(order, 0, 1, drop_last) is order  # one process: untouched


def test_evaluation_blocks_hold_every_image_once_in_order() -> None:
    for n, world_size in [(12, 2), (13, 3), (2, 4), (1000, 7)]:
        blocks = [shard_block(n, r, world_size) for r in range(world_size)]
        assert [i for lo, hi in blocks for i in range(lo, hi)] == list(range(n))


def _indexed(n: int) -> ImageTensors:
    """n random images whose labels are their own indices."""
    g = torch.Generator().manual_seed(0)
    return ImageTensors(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g),
                        torch.arange(n))


@pytest.mark.parametrize("drop_last", [True, False])
def test_the_in_memory_loader_gives_each_rank_its_share(drop_last: bool) -> None:
    data = _indexed(50)
    ranks = [BatchLoader(data, LoaderOptions(4, [0.5] * 3, [0.25] * 3, shuffle=True, seed=3,
                                             drop_last=drop_last, rank=r, world_size=2))
             for r in range(2)]
    epochs = []
    for epoch in (0, 1):
        seen = []
        for loader in ranks:
            loader.set_epoch(epoch)
            seen.append(torch.cat([y for _, y in loader]).tolist())
        assert len(ranks[0]) == len(ranks[1]) == (6 if drop_last else 7)
        assert len(seen[0]) == len(seen[1])
        if drop_last:  # 25 per rank, 6 batches of 4: 24 each, all different
            assert len(seen[0]) == 24 and not set(seen[0]) & set(seen[1])
        else:  # 25 each, in 7 batches (the last one short), every image read
            assert len(seen[0]) == 25 and set(seen[0]) | set(seen[1]) == set(range(50))
        epochs.append(seen)
    assert epochs[0] != epochs[1], "each epoch draws a new permutation"
    ranks[1].set_epoch(0)
    assert torch.cat([y for _, y in ranks[1]]).tolist() == epochs[0][1], "an epoch replays"


def test_the_in_memory_evaluation_loader_splits_the_images_between_ranks() -> None:
    data = _indexed(13)
    got = [torch.cat([y for _, y in BatchLoader(data, LoaderOptions(
        4, [0] * 3, [1] * 3, rank=r, world_size=3))]).tolist() for r in range(3)]
    assert [i for g in got for i in g] == list(range(13))


def test_each_rank_augments_with_its_own_replayable_stream() -> None:
    one = torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8,
                        generator=torch.Generator().manual_seed(1))
    same = ImageTensors(one.repeat(32, 1, 1, 1), torch.zeros(32, dtype=torch.int64))
    augment = parse_augment("crop:2,hflip")
    first = []
    for rank in (0, 1):
        loader = BatchLoader(same, LoaderOptions(8, [0.5] * 3, [0.25] * 3, shuffle=True,
                                                 augment=augment, seed=5, rank=rank,
                                                 world_size=2))
        x = next(iter(loader))[0]
        assert torch.equal(next(iter(loader))[0], x)  # (seed, epoch, rank) fix the stream
        first.append(x)
    # The images are all the same: only the augmentation can tell the ranks' batches apart.
    assert not torch.equal(first[0], first[1])
    single = BatchLoader(same, LoaderOptions(8, [0.5] * 3, [0.25] * 3, shuffle=True,
                                             augment=augment, seed=5))
    assert torch.equal(next(iter(single))[0], first[0]), "rank 0 draws one process's stream"
    assert epoch_seed(5, 2, 0) == epoch_seed(5, 2) != epoch_seed(5, 2, 1)


def test_the_batch_size_check_is_of_the_batch_of_all_ranks() -> None:
    with pytest.raises(ConfigError, match="batch size 8 is larger than the 7"):
        BatchLoader(_indexed(7), LoaderOptions(4, [0] * 3, [1] * 3, shuffle=True,
                                               drop_last=True, rank=1, world_size=2))


def _row_indices(loader: Any, reference: torch.Tensor) -> list[int]:
    index_of = {row.numpy().tobytes(): i for i, row in enumerate(reference)}
    return [index_of[row.contiguous().numpy().tobytes()] for x, _ in loader for row in x]


def test_the_streaming_loader_shards_like_the_in_memory_one(image_folder: Path) -> None:
    mem = load_dataset(f"imagefolder:{image_folder}", image_size=16, progress=False)
    lazy = load_dataset(f"imagefolder:{image_folder}", image_size=16, progress=False,
                        memory_budget=0)
    reference = Normalize([0.5] * 3, [0.25] * 3, torch.device("cpu"))(mem.train.images)
    for shuffle in (True, False):
        seen = []
        for rank in (0, 1):
            kw: dict[str, Any] = dict(shuffle=shuffle, drop_last=shuffle, seed=7, rank=rank,
                                      world_size=2)
            streamed = make_loader(lazy.train, LoaderOptions(4, [0.5] * 3, [0.25] * 3,
                                                             workers=0, **kw))
            in_memory = make_loader(mem.train, LoaderOptions(4, [0.5] * 3, [0.25] * 3, **kw))
            streamed.set_epoch(2)
            in_memory.set_epoch(2)
            seen.append(_row_indices(streamed, reference))
            assert seen[-1] == _row_indices(in_memory, reference)
        assert len(seen[0]) == len(seen[1]) == 24 and not set(seen[0]) & set(seen[1])
    # With augmentation too, the two paths give rank 1 the very same batches.
    kw = dict(shuffle=True, drop_last=True, seed=7, rank=1, world_size=2,
              augment=parse_augment("crop:2,hflip"))
    a = make_loader(lazy.train, LoaderOptions(4, [0.5] * 3, [0.25] * 3, workers=0, **kw))
    b = make_loader(mem.train, LoaderOptions(4, [0.5] * 3, [0.25] * 3, **kw))
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(ya, yb) and torch.allclose(xa, xb, atol=1e-6)


# --- the process group, in this process -------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_torchrun_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with distributed.process_group("cpu") as w:
        assert w == distributed.World() and not distributed.active()
        callbacks = [MetricsLog(Path("x")), EarlyStopping(0)]
        assert rank_callbacks(callbacks) is callbacks
        model = torch.nn.Linear(2, 2)
        assert distributed.wrap(model, torch.device("cpu")) is model
        assert distributed.sum_over_ranks(torch.tensor(1.5), 2) == [1.5, 2.0]


def test_the_process_group_is_joined_and_always_left(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    with pytest.raises(RuntimeError, match="inside"):
        with distributed.process_group("cpu") as w:
            assert distributed.active() and torch.distributed.get_backend() == "gloo"
            assert w == distributed.World(0, 1, 0)
            kept = rank_callbacks([MetricsLog(Path("x")), EarlyStopping(0)])
            assert isinstance(kept[-1], RankSync) and len(kept) == 3
            assert isinstance(distributed.wrap(torch.nn.Linear(2, 2), torch.device("cpu")),
                              torch.nn.parallel.DistributedDataParallel)
            assert distributed.sum_over_ranks(torch.tensor(1.5), 2) == [1.5, 2.0]
            raise RuntimeError("inside")
    assert not distributed.active(), "an error inside must still leave the group"


LEAVING = ("import atexit, sys\n"
           "from descend.training.fitting.distributed import leave\n"
           "atexit.register(lambda: print('teardown ran'))\n"
           "sys.stdout.write('said, not yet flushed')\n"
           "leave(3)\n"
           "print('returned')\n")


@pytest.mark.parametrize("worker", [True, False])
def test_a_torchrun_worker_leaves_without_the_teardown(worker: bool, tmp_path: Path) -> None:
    """`leave`: a worker's status and its buffered output survive, the interpreter's teardown
    (atexit here; gloo's abort in CI) is skipped; without torchrun it returns."""
    ranks = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"} if worker else {}
    env = {**_env(tmp_path / "cache"), **ranks}
    proc = subprocess.run([sys.executable, "-c", LEAVING], env=env, capture_output=True,
                          text=True, timeout=120)
    if worker:
        assert (proc.returncode, proc.stdout) == (3, "said, not yet flushed")
    else:
        assert proc.returncode == 0
        assert proc.stdout == "said, not yet flushedreturned\nteardown ran\n"


def test_the_batch_size_is_the_global_batch() -> None:
    assert distributed.split_batch(256, 4) == 64 and distributed.split_batch(8, 1) == 8
    with pytest.raises(ConfigError, match="--batch-size 7 does not split evenly over 2"):
        distributed.split_batch(7, 2)


def test_a_followed_run_folder_is_never_created_or_written(tmp_path: Path) -> None:
    folder = RunFolder.follow(tmp_path / "run")
    folder.write_text("config.json", "{}")
    folder.abandon()
    assert not (tmp_path / "run").exists() and not folder.owned
    assert Checkpoint.rank_zero_only and MetricsLog.rank_zero_only
    assert not EarlyStopping.rank_zero_only


# --- two processes under torchrun ---------------------------------------------------------------

def _env(cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in (*distributed.TORCHRUN_VARIABLES, "MASTER_ADDR", "MASTER_PORT")}
    return {**env, "DESCEND_CACHE": str(cache), **extra}


def _torchrun(args: list[str], env: dict[str, str], check: bool = True
              ) -> subprocess.CompletedProcess[str]:
    """torchrun with ``args``; on a timeout it is asked to stop (SIGTERM: it stops its workers,
    which run in process groups of their own), then killed."""
    with subprocess.Popen([*TORCHRUN, *args], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            out, err = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.communicate(timeout=60)
            finally:
                proc.kill()
            raise
    if check and proc.returncode != 0:
        raise AssertionError(f"torchrun failed ({proc.returncode}):\n{err[-4000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _records(folder: Path) -> list[dict[str, Any]]:
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = read_checkpoint(a)["state_dict"], read_checkpoint(b)["state_dict"]
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope="module")
def colors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp-data") / "colors"
    for k, (name, color) in enumerate(COLORS.items()):
        write_class_images(root / name, color, 20, seed=k)
    return root


@pytest.fixture(scope="module")
def ddp_run(colors: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One two-process run of tests/support/ddp_train.py (3 epochs, 48 training images)."""
    base = tmp_path_factory.mktemp("ddp-run")
    run, record = base / "run", base / "record"
    proc = _torchrun([str(SCRIPT), str(colors), str(run), str(record), *RECIPE],
                     _env(base / "cache"))
    return {"run": run, "records": _records(record), "stdout": proc.stdout, "base": base}


def test_each_rank_trains_on_its_own_half_of_every_epoch(ddp_run: dict[str, Any]) -> None:
    r0, r1 = ddp_run["records"]
    assert r0["world_size"] == r1["world_size"] == 2
    orders = []
    for epoch in map(str, range(EPOCHS)):
        a, b = r0["seen"][epoch], r1["seen"][epoch]
        assert len(a) == len(b) == 24  # 3 steps of 4 images... per rank: 48 / 2
        assert not set(a) & set(b) and set(a) | set(b) == set(range(48))
        orders.append(a)
    assert orders[0] != orders[1] != orders[2]
    # DistributedDataParallel shared the gradients: the ranks' weights never drifted apart.
    assert r0["trained_as"] == r1["trained_as"] == "DistributedDataParallel"
    assert r0["weights"] == r1["weights"] and len(set(r0["weights"].values())) == EPOCHS


def test_metrics_are_over_all_ranks_as_in_one_process(ddp_run: dict[str, Any],
                                                      tmp_path: Path) -> None:
    r0, r1 = ddp_run["records"]
    for epoch, (row0, row1) in enumerate(zip(r0["rows"], r1["rows"], strict=True)):
        loss = [r0["sums"][str(epoch)][0], r1["sums"][str(epoch)][0]]
        correct = [r0["sums"][str(epoch)][1], r1["sums"][str(epoch)][1]]
        assert r0["sums"][str(epoch)][2] + r1["sums"][str(epoch)][2] == 48
        assert row0["train_loss"] == pytest.approx(sum(loss) / 48, rel=1e-6)
        assert row0["train_acc"] == pytest.approx(sum(correct) / 48)
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert row0[key] == row1[key], f"the ranks disagree on {key}"
    rows = list(csv.DictReader((ddp_run["run"] / "metrics.csv").open()))
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(
        [r["val_loss"] for r in r0["rows"]], rel=1e-5)
    # The validation metrics each rank computed on its half, summed: what one process measures.
    best = read_checkpoint(ddp_run["run"] / "best.pt")
    one = evaluate_checkpoint(ddp_run["run"] / "best.pt", split="val", out_dir=tmp_path / "eval",
                              device="cpu", progress=False)
    assert one["images"] == 12
    assert one["accuracy"] == pytest.approx(best["metrics"]["val_acc"])
    assert one["loss"] == pytest.approx(best["metrics"]["val_loss"], rel=1e-5)


def test_rank_zero_alone_prints_and_writes_the_run_folder(ddp_run: dict[str, Any]) -> None:
    run = ddp_run["run"]
    r0, r1 = ddp_run["records"]
    assert r0["owns_folder"] and not r1["owns_folder"]
    assert r0["callbacks"] == ["EMA", "MetricsLog", "Checkpoint", "Progress", "EarlyStopping",
                               "Record", "RankSync"]
    assert r1["callbacks"] == ["EMA", "EarlyStopping", "Record", "RankSync"]
    assert sorted(p.name for p in run.iterdir()) == EXPECTED_FILES
    assert ddp_run["records"][1]["files"] == EXPECTED_FILES  # seen by rank 1 at its end
    log = (run / "train.log").read_text()
    for epoch in range(1, EPOCHS + 1):
        assert log.count(f"epoch {epoch:>3}/{EPOCHS}") == 1
        assert ddp_run["stdout"].count(f"epoch {epoch:>3}/{EPOCHS}") == 1
    assert "batch 8 (4 on each of 2 processes, gloo)" in log
    assert len(list(csv.DictReader((run / "metrics.csv").open()))) == EPOCHS
    leftovers = {p.name for p in ddp_run["base"].iterdir()} - {"run", "record", "cache"}
    assert not leftovers


def test_a_two_process_checkpoint_works_in_one_process(ddp_run: dict[str, Any], colors: Path,
                                                       tmp_path: Path) -> None:
    run = ddp_run["run"]
    for name in ("best.pt", "last.pt"):
        keys = read_checkpoint(run / name)["state_dict"].keys()
        assert not any(k.startswith("module.") for k in keys), "no DDP prefix in checkpoints"
    classifier = Classifier.load(run / "best.pt", device="cpu")
    for cls in COLORS:
        assert classifier.predict(colors / cls / "img_000.png").top[0][0] == cls
    result = train(data=f"imagefolder:{colors}", model="cnn", init=str(run), epochs=1,
                   batch_size=8, out=str(tmp_path / "init"), progress=False, download=False,
                   device="cpu")
    assert "nothing new (the classes fit)" in (result.run_dir / "train.log").read_text()
    assert result.history[0]["val_acc"] >= 0.9


def test_accuracy_is_in_the_band_of_a_one_process_run(ddp_run: dict[str, Any], colors: Path,
                                                      tmp_path: Path) -> None:
    # The reference's precision and threads fixed (--deterministic), not timed: a clean-clone CI
    # run timed bfloat16 and one thread, and its third epoch validated at 10 of 12 (0.833).
    one = train(data=f"imagefolder:{colors}", model="cnn", ema_decay=0.9, epochs=EPOCHS,
                batch_size=8, image_size=16, out=str(tmp_path / "one"), progress=False,
                download=False, lr=0.05, augment="none", device="cpu", deterministic=True)
    two = ddp_run["records"][0]["rows"]
    assert one.history[-1]["val_acc"] >= 0.9 and two[-1]["val_acc"] >= 0.9
    assert abs(one.history[-1]["val_acc"] - two[-1]["val_acc"]) <= 0.1
    assert abs(one.history[-1]["train_loss"] - two[-1]["train_loss"]) <= 0.3


@pytest.mark.slow  # torchrun launches of their own (15-30 s each)
def test_a_killed_two_process_run_resumes_to_the_same_weights(
        ddp_run: dict[str, Any], colors: Path, tmp_path: Path) -> None:
    """Rank 0 is SIGKILLed as epoch 3 starts; ``--resume`` under torchrun finishes the run, with
    the weights of the run that was never interrupted."""
    env = _env(tmp_path / "cache")
    killed = _torchrun([str(SCRIPT), str(colors), str(tmp_path / "run"), str(tmp_path / "rec"),
                        "--kill-at-epoch", "3", *RECIPE], env, check=False)
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr
    assert read_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 2
    resumed = _torchrun(["-m", "descend", "train", "--resume", str(tmp_path / "run"),
                         "--json"], env)
    result = json.loads(resumed.stdout)  # one JSON document: rank 0's alone
    assert [r["epoch"] for r in result["history"]] == [1, 2, 3]
    assert "resuming" in resumed.stderr
    _same_weights(tmp_path / "run" / "last.pt", ddp_run["run"] / "last.pt")
    metrics = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")
    assert [[r[k] for k in metrics] for r in result["history"]] == [
        [r[k] for k in metrics] for r in ddp_run["records"][0]["rows"]]


@pytest.mark.slow  # torchrun launches of their own (15-30 s each)
def test_streamed_files_are_sharded_the_same_way(ddp_run: dict[str, Any], colors: Path,
                                                 tmp_path: Path) -> None:
    env = _env(tmp_path / "cache", DESCEND_MEMORY_BUDGET="0")  # 0: always stream
    _torchrun([str(SCRIPT), str(colors), str(tmp_path / "run"), str(tmp_path / "rec"), *RECIPE],
              env)
    assert "streaming from 48 files" in (tmp_path / "run" / "train.log").read_text()
    r0, r1 = _records(tmp_path / "rec")
    for epoch in map(str, range(EPOCHS)):
        assert not set(r0["seen"][epoch]) & set(r1["seen"][epoch])
        assert len(r0["seen"][epoch]) == len(r1["seen"][epoch]) == 24
        # Same files, same order: the very batches of the in-memory run.
        assert r0["seen"][epoch] == ddp_run["records"][0]["seen"][epoch]
    _same_weights(tmp_path / "run" / "last.pt", ddp_run["run"] / "last.pt")


@pytest.mark.slow  # torchrun launches of their own (15-30 s each)
def test_when_rank_zero_stops_every_rank_stops(colors: Path, tmp_path: Path) -> None:
    """A stop decided on rank 0 alone (a time budget, early stopping): the run ends there on
    every rank, instead of rank 1 waiting forever in the next epoch's first step."""
    _torchrun([str(SCRIPT), str(colors), str(tmp_path / "run"), str(tmp_path / "rec"),
               "--stop-on-rank0-at", "1"], _env(tmp_path / "cache"))
    assert [len(r["rows"]) for r in _records(tmp_path / "rec")] == [1, 1]
    assert len(list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))) == 1


@pytest.mark.slow  # torchrun launches of their own (15-30 s each)
def test_a_refused_run_folder_stops_every_rank(colors: Path, ddp_run: dict[str, Any],
                                               tmp_path: Path) -> None:
    """Rank 0 cannot have the folder (it holds a run): no rank waits for it, all say why."""
    proc = _torchrun(["-m", "descend", "train", "--data", f"imagefolder:{colors}", "--model",
                      "mlp", "--epochs", "1", "--out", str(ddp_run["run"]), "--no-progress",
                      "--no-download"], _env(tmp_path / "cache"), check=False)
    assert proc.returncode != 0
    assert proc.stderr.count("already holds a run") >= 2  # rank 0's error, and rank 1's copy
    assert sorted(p.name for p in ddp_run["run"].iterdir()) == EXPECTED_FILES
