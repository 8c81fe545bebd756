"""Learning-rate schedules against PyTorch's schedulers, stepped once per epoch; their use in fit."""
import itertools
import math

import numpy as np
import pytest

import cnn
from cnn.schedules import Schedule


def _torch_rates(kind, lr, epochs, warmup, step_epochs, gamma, min_factor):
    """The rate of each epoch as PyTorch gives it: read before the epoch, ``scheduler.step()`` after."""
    torch = pytest.importorskip("torch")
    sched = torch.optim.lr_scheduler
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    main = {"constant": lambda: sched.LambdaLR(opt, lambda _: 1.0),
            "step": lambda: sched.StepLR(opt, step_epochs, gamma),
            "cosine": lambda: sched.CosineAnnealingLR(opt, max(1, epochs - warmup), eta_min=min_factor * lr)}[kind]
    if warmup:
        ramp = sched.LinearLR(opt, start_factor=1 / (warmup + 1), total_iters=warmup)
        scheduler = sched.SequentialLR(opt, [ramp, main()], milestones=[warmup])
    else:
        scheduler = main()
    rates = []
    for _ in range(epochs):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return rates


CASES = [(kind, epochs, warmup, step, gamma, floor)
         for kind, (epochs, warmup), (step, gamma), floor in itertools.product(
             ["constant", "step", "cosine"], [(1, 0), (6, 0), (12, 0), (12, 3), (20, 1), (5, 4)],
             [(1, 0.5), (3, 0.1), (4, 1.0)], [0.0, 0.05])
         if (kind == "step" or (step, gamma) == (3, 0.1)) and (kind == "cosine" or floor == 0.0)]


@pytest.mark.parametrize("kind,epochs,warmup,step,gamma,floor", CASES, ids=str)
def test_schedule_matches_torch(kind, epochs, warmup, step, gamma, floor):
    ours = Schedule(0.03, epochs, kind, warmup, step, gamma, floor).rates()
    np.testing.assert_allclose(ours, _torch_rates(kind, 0.03, epochs, warmup, step, gamma, floor), rtol=1e-10)


def test_warmup_reaches_the_rate_then_the_main_schedule_starts():
    s = Schedule(0.1, 10, "cosine", warmup_epochs=4)
    rates = s.rates()
    assert rates[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert all(a > b for a, b in zip(rates[4:], rates[5:])) and rates[-1] > 0
    assert Schedule(0.1, 9, "step", step_epochs=3, gamma=0.5).rates() == pytest.approx(
        [0.1] * 3 + [0.05] * 3 + [0.025] * 3)
    assert Schedule(0.1, 5, "cosine", min_factor=1.0).rates() == pytest.approx([0.1] * 5)
    assert math.isclose(Schedule(0.1, 4, "cosine", min_factor=0.1)(1), 0.1)


@pytest.mark.parametrize("bad,message", [
    (dict(kind="linear"), "schedule must be one of constant, step, cosine"),
    (dict(lr=0.0), "learning rate must be a finite number > 0"),
    (dict(lr=float("nan")), "learning rate must be a finite number > 0"),
    (dict(epochs=0), "epochs must be an int >= 1"),
    (dict(warmup_epochs=-1), "warmup_epochs must be an int >= 0"),
    (dict(step_epochs=0), "step_epochs must be an int >= 1"),
    (dict(gamma=0.0), "gamma must be in (0, 1]"),
    (dict(min_factor=1.5), "min_factor must be in [0, 1]"),
])
def test_schedule_refuses_bad_settings_by_name(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[").replace(")", r"\)")
                       .replace("]", r"\]")):
        Schedule(**{"lr": 0.1, "epochs": 5, **bad})


def test_fit_sets_and_reports_each_epochs_rate():
    rng = np.random.default_rng(0)
    data = cnn.Dataset(rng.standard_normal((40, 1, 6, 6)).astype(np.float32), rng.integers(0, 2, 40))
    spec = cnn.ModelSpec(blocks=(cnn.ConvBlockSpec(2, 3, padding="same"),), input_shape=(1, 6, 6), classes=2)
    model, opt = cnn.Model(spec), cnn.SGD(0.5)
    schedule = Schedule(0.2, 4, "step", warmup_epochs=1, step_epochs=2, gamma=0.5)
    seen = []
    result = cnn.fit(model, opt, data, epochs=4, batch_size=16, schedule=schedule,
                     callbacks=[lambda report: seen.append(report.optimizer.lr)])
    assert [e["learning_rate"] for e in result.history] == pytest.approx([0.1, 0.2, 0.2, 0.1]) == seen
    plain = cnn.fit(cnn.Model(spec), cnn.Adam(0.003), data, epochs=2, batch_size=16)
    assert [e["learning_rate"] for e in plain.history] == [0.003, 0.003]
