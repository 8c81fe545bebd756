"""The values of a moved or refined grid (:mod:`dashboards.steps`), and its bounds against the sweep file's."""
import pytest

from dashboards import steps


@pytest.mark.parametrize("field, values, up, expected", [
    ("kernel_size", [3, 5], True, 7),          # evenly spaced: one more step
    ("kernel_size", [3, 5, 7], True, 9),
    ("kernel_size", [3, 5], False, 1),
    ("depth", [8, 16], True, 32),              # powers of two: a scale
    ("depth", [4, 8, 16], False, 2),
    ("stride", [1, 2], False, None),           # nothing below 1
    ("padding", [1, 2], False, 0),             # padding may be 0
    ("learning_rate", [0.001, 0.01, 0.1], True, 1.0),
    ("learning_rate", [0.003, 0.01], False, 0.0009),
    ("momentum", [0.5, 0.9], True, 0.98),      # steps on 1 - momentum, which must stay below 1
    ("kernel_size", [33, 64], True, None),     # 64 is the largest window a sweep file accepts
    ("blocks", [8, 12], True, 16),             # clipped to the bound
    ("weight_decay", [0.0, 1e-4], True, 0.0002),
    ("weight_decay", [0.0, 1e-4], False, None),
])
def test_one_step_beyond_an_edge(field, values, up, expected):
    assert steps.beyond(field, values, up) == expected


@pytest.mark.parametrize("field, a, b, values, expected", [
    ("kernel_size", 3, 7, [3, 7, 11], 5),      # odd sizes stay odd
    ("kernel_size", 3, 5, [3, 5, 7], None),    # no odd size between 3 and 5
    ("depth", 8, 32, [8, 32], 16),             # powers of two stay powers of two
    ("depth", 8, 16, [8, 16], None),
    ("learning_rate", 0.01, 0.1, [0.001, 0.01, 0.1], 0.0316),  # the geometric middle
    ("epochs", 2, 6, [2, 6], 4),
])
def test_a_finer_value_between_two(field, a, b, values, expected):
    assert steps.between(field, a, b, values) == expected


def test_bounds_are_the_sweep_files():
    """steps.LOWEST and steps.HIGHEST repeat sweeper/spec's bounds (dashboards cannot import it):
    each bound is accepted by a sweep file's grid and one step past it is refused."""
    from sweeper.spec.config import GridConfig, ModelConfig, TrainConfig

    fields = {**ModelConfig.model_fields, **TrainConfig.model_fields}
    for field, high in steps.HIGHEST.items():
        GridConfig(**{field: [high]})
        with pytest.raises(ValueError):
            GridConfig(**{field: [high + 1]})
    for field, low in steps.LOWEST.items():
        GridConfig(**{field: [low]})
        below = low - 1 if isinstance(low, int) else low - 1e-9
        with pytest.raises(ValueError):
            GridConfig(**{field: [below]})
    for field in steps.FRACTIONS:
        with pytest.raises(ValueError):
            GridConfig(**{field: [1.0]})
    # Integer fields not listed start at 1 (0 is refused), and listed fields exist.
    assert set(steps.HIGHEST) | set(steps.LOWEST) <= set(fields)
    with pytest.raises(ValueError):
        GridConfig(kernel_size=[0])
