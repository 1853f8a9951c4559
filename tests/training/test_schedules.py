import pytest
import torch

from descend.config import TrainConfig
from descend.training.fitting.schedules import create_schedule


@pytest.mark.parametrize("total", range(1, 12))
def test_onecycle_survives_very_short_runs(total: int) -> None:
    """torch's OneCycleLR divides by zero at 4 total steps with pct_start 0.25."""
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedule = create_schedule(opt, TrainConfig(epochs=1), total)
    for _ in range(total):
        opt.step()
        schedule.step_batch()
    assert opt.param_groups[0]["lr"] <= 0.1


def test_cosine_warms_up_then_anneals_to_zero() -> None:
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    schedule = create_schedule(opt, TrainConfig(epochs=4, schedule="cosine", warmup_epochs=1), 10)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step_batch()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 0.01


@pytest.mark.parametrize("warmup", [0.0, 1.0])
def test_linear_warms_up_then_falls_in_a_straight_line_to_zero(warmup: float) -> None:
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0, momentum=0.9)
    schedule = create_schedule(opt, TrainConfig(epochs=4, schedule="linear",
                                                warmup_epochs=warmup), 10)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step_batch()
    warm = int(warmup * 10)
    assert lrs[:warm] == pytest.approx([(i + 1) / warm for i in range(warm)])
    decay = lrs[warm:]
    assert decay[0] == pytest.approx(1.0) and decay[-1] < 0.05
    steps = [a - b for a, b in zip(decay, decay[1:])]
    assert steps == pytest.approx([steps[0]] * len(steps))  # a straight line
    assert opt.param_groups[0]["momentum"] == 0.9  # unlike onecycle, momentum stays


@pytest.mark.parametrize("total", [4, 7, 40, 391])
def test_onecycle_is_torchs_step_for_step(total: int) -> None:
    """Unrevised, the horizon's onecycle gives torch's OneCycleLR learning rate and momentum."""
    from torch.optim import lr_scheduler

    ours = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.4, momentum=0.9)
    theirs = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.4, momentum=0.9)
    schedule = create_schedule(ours, TrainConfig(epochs=1), total)
    reference = lr_scheduler.OneCycleLR(theirs, max_lr=0.4, total_steps=total,
                                        pct_start=max(0.25, 2.0 / total))
    horizon = schedule.horizon
    for _ in range(total):
        for key in ("lr", "momentum"):
            assert ours.param_groups[0][key] == pytest.approx(theirs.param_groups[0][key],
                                                              rel=1e-9, abs=1e-12)
        theirs.step()
        if horizon.step < total - 1:
            reference.step()
        schedule.step_batch()


def test_a_revised_horizon_keeps_the_learning_rate_continuous_and_ends_annealed() -> None:
    from descend.training.fitting.schedules import Horizon

    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0, momentum=0.9)
    horizon = Horizon(100)
    schedule = create_schedule(opt, TrainConfig(epochs=1), 100, horizon)
    lrs = []
    for step in range(160):
        if step == 30:
            horizon.revise(160)  # the budget found room for 60 more steps
        if step == 90:
            horizon.revise(150)  # then the machine slowed
        if not horizon.steps_left:
            break
        lrs.append(opt.param_groups[0]["lr"])
        schedule.step_batch()
    assert len(lrs) == 150
    jumps = [abs(b - a) for a, b in zip(lrs, lrs[1:])]
    assert max(jumps) < 0.1  # no step changes the rate by more than a tenth of the peak
    assert max(lrs) == pytest.approx(1.0, abs=0.01) and lrs[-1] < 1e-3
    assert opt.param_groups[0]["lr"] < 1e-4  # annealed exactly at the horizon's end


@pytest.mark.parametrize(("momentum", "cycles"), [(0.9, True), (0.8, False), (0.95, False)])
def test_onecycle_cycles_the_default_momentum_and_holds_a_given_one(momentum: float,
                                                                   cycles: bool) -> None:
    """--momentum's default is cycled 0.95 -> 0.85 -> 0.95; any other value is what it says."""
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0, momentum=momentum)
    schedule = create_schedule(opt, TrainConfig(epochs=1, momentum=momentum), 40)
    seen = set()
    for _ in range(40):
        seen.add(round(opt.param_groups[0]["momentum"], 6))
        opt.step()
        schedule.step_batch()
    if cycles:
        assert min(seen) == pytest.approx(0.85) and max(seen) == pytest.approx(0.95)
    else:
        assert seen == {momentum}
