"""The files descend 0.1.0 wrote become today's format in one step (`upgrade_checkpoint`,
`upgrade_config`), and a file already in today's format passes through it unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from descend.errors import ConfigError
from descend.runtime.migrate import upgrade_checkpoint, upgrade_config

FIXTURE = Path(__file__).parent.parent / "fixtures" / "run-0.1.0"


def _load(name: str) -> dict[str, Any]:
    return torch.load(FIXTURE / name, map_location="cpu", weights_only=True)


def test_a_0_1_0_last_pt_becomes_todays_format(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    old = _load("last.pt")
    assert old["versions"]["descend"] == "0.1.0"
    assert {"horizon", "precision", "data_fingerprint", "geometry"}.isdisjoint(old)
    (tmp_path / "colors").mkdir()  # the config's relative folder exists here; the stored one not
    monkeypatch.chdir(tmp_path)
    new = upgrade_checkpoint(old)
    assert new["early_stopping"] == {"monitor": "val_acc", "min_delta": 0.0,
                                     "best": old["early_stopping"]["best"], "best_epoch": 1}
    # 1 epoch of 48 images (seconds x images_per_sec) in batches of 8: 6 steps, all done
    assert new["horizon"] == {"total": 6, "step": 6, "anchor_step": 0, "anchor_progress": 0.0}
    assert new["precision"] == {"bf16_autocast": False}
    assert new["data_fingerprint"] == {"classes": None, "counts": None, "files": None}
    assert new["geometry"] == {"size": [16, 16], "resize": None}
    assert old["data"] == "imagefolder:/tmp/v010/colors" and new["data"] == "imagefolder:colors"
    assert new["scheduler"] == old["scheduler"]  # constant: torch's LambdaLR then and now
    assert new["state_dict"] is old["state_dict"] and new["config"] == old["config"]
    assert "horizon" not in old  # the loaded dict is not changed
    again = upgrade_checkpoint(new)
    assert {k: v for k, v in again.items() if k != "state_dict"} == {
        k: v for k, v in new.items() if k != "state_dict"}


def test_a_0_1_0_torch_schedule_keeps_its_peaks() -> None:
    old = _load("last.pt")
    groups = old["optimizer"]["param_groups"]
    cosine = {**old, "config": {**old["config"], "schedule": "cosine"}}
    assert upgrade_checkpoint(cosine)["scheduler"] == {"peaks": [0.05]}  # LambdaLR's base_lrs
    one_cycle = {**old, "config": {**old["config"], "schedule": "onecycle"},
                 "scheduler": {"base_lrs": [0.002], "total_steps": 6},
                 "optimizer": {**old["optimizer"], "param_groups": [{**groups[0],
                                                                     "max_lr": 0.05}]}}
    assert upgrade_checkpoint(one_cycle)["scheduler"] == {"peaks": [0.05]}  # OneCycleLR's max_lr
    # under 4 steps onecycle was, and is, a constant LambdaLR: its state stays torch's
    short = {**old, "config": {**old["config"], "schedule": "onecycle"}}
    assert upgrade_checkpoint(short)["scheduler"] == old["scheduler"]


def test_a_0_1_0_best_pt_and_config_json() -> None:
    best = upgrade_checkpoint(_load("best.pt"))
    assert "horizon" not in best and "precision" not in best and "geometry" in best
    config = json.loads((FIXTURE / "config.json").read_text())
    assert upgrade_config(config) is config  # nothing in it changed spelling since


def test_the_0_1_spelling_of_the_decode_geometry_in_a_saved_config() -> None:
    saved = {"augment": "resize:24,center-crop:16", "image_size": 16}
    assert upgrade_config(saved) == {"augment": "none", "image_size": 16, "resize": 24,
                                     "center_crop": 16}
    ckpt = upgrade_checkpoint({"model": {"image_size": [16, 16]}, "config": saved})
    assert ckpt["geometry"] == {"size": [16, 16], "resize": 24}  # what predict replays
    with pytest.raises(ConfigError, match="--resize 32 disagrees with resize:24"):
        upgrade_config({**saved, "resize": 32})


def test_damaged_parts_are_left_for_the_checks() -> None:
    damaged = {"config": "not settings", "model": 3, "data": 7, "early_stopping": [1],
               "scheduler": None}
    assert upgrade_checkpoint(damaged) == damaged
