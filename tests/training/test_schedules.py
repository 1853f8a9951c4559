import pytest
import torch

from descend.config import TrainConfig
from descend.training.schedules import create_schedule


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
