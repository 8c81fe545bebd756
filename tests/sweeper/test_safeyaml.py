"""Bounds on sweep files (sweeper/spec/safeyaml.py): refused before anything grows, with a line."""
import tracemalloc
from pathlib import Path

import pytest

from sweeper.app.cli import main
from sweeper.spec.config import load_sweep, parse_sweep
from sweeper.spec.safeyaml import MAX_DEPTH, MAX_NODES, character_problems
from sweeper.spec.yamlsource import SweepFileError, parse_yaml

REPO = Path(__file__).resolve().parents[2]


def laughs(width: int, levels: int) -> str:
    lines = ["name: laughs", f"a0: &a0 [{', '.join(['1'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines + [f"exclude: *a{levels - 1}"]) + "\n"


def traced(fn):
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("text, expected, line", [
    (laughs(9, 10), f"makes the file expand to more than {MAX_NODES} values", 6),
    ("name: r\nrepeats: 100000000\n", "repeats: Input should be at most 1000", 2),
])
def test_hostile_files_stay_small(text, expected, line, tmp_path, capsys, record_figure):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    code, peak = traced(lambda: main(["validate", str(path)]))
    err = capsys.readouterr().err
    assert code == 2 and expected in err and f"(line {line})" in err
    assert peak < 20e6, peak
    record_figure(f"{'billion laughs (9^10 values in ' + str(len(text)) + ' bytes)' if 'laughs' in text else 'repeats 10^8'}: "
                  f"exit 2, peak traced memory of validate {peak / 1e6:.1f} MB")


@pytest.mark.parametrize("text, line", [
    ("name: r\nexclude: &e [*e]\n", 2),
    ("name: r\nmodel: &m {depth: *m}\n", 2),
    ("name: r\nmodel: &m\n  <<: *m\n", 3),
    ("name: r\nexclude:\n  - &e\n    - a: *e\n", 4),
])
def test_recursive_aliases_are_refused_at_their_line(text, line):
    with pytest.raises(SweepFileError) as info:
        parse_yaml(text, "f.yaml")
    problem = info.value.problems[0]
    assert problem.message.startswith("recursive alias *") and problem.line == line


def test_aliases_and_merge_keys_within_bounds_still_work():
    config = load_sweep_text("name: a\nmodel: {<<: &m {kernel_size: 5, pooling: avg}, depth: 4}\n"
                             "grid: {kernel_size: [&k 3, 5]}\nexclude: [{kernel_size: *k}]\n")
    assert (config.model.kernel_size, config.model.pooling, config.model.depth) == (5, "avg", 4)
    assert config.exclude == [{"kernel_size": 3}]
    with pytest.raises(SweepFileError, match="base: unknown key"):  # an anchor's own key is still checked
        load_sweep_text("name: a\nbase: &b {kernel_size: 5}\nmodel: {<<: *b}\n")


def load_sweep_text(text):
    data, lines = parse_yaml(text, "f.yaml")
    return parse_sweep(data, lines, "f.yaml")


def test_nesting_up_to_the_limit_parses():
    depth = MAX_DEPTH - 2  # the top mapping and the exclude list are two levels
    data, _ = parse_yaml("name: n\nexclude: " + "[" * depth + "]" * depth + "\n")
    assert isinstance(data["exclude"], list)
    with pytest.raises(SweepFileError, match=f"deeper than {MAX_DEPTH} levels"):
        parse_yaml("name: n\nexclude: " + "[" * 10 ** 5 + "]" * 10 ** 5 + "\n")


@pytest.mark.parametrize("char", [chr(c) for c in range(32) if chr(c) not in "\t\n\r"] + ["\x7f", "\x9b", "\ufffe"])
def test_every_control_character_is_named_with_its_line(char):
    problems = character_problems(f"name: a\r\nseed: 1\nmodel:\n  depth: 4{char}\n")
    assert len(problems) == 1 and problems[0][0] == 4, problems
    assert f"U+{ord(char):04X}" in problems[0][1] and "at column 11" in problems[0][1]


def test_byte_order_mark_and_crlf_are_fine(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfname: bom\r\nmodel:\r\n  depth: -1\r\n")
    with pytest.raises(SweepFileError) as info:
        load_sweep(path)
    assert info.value.problems[0].line == 3 and info.value.problems[0].path == "model.depth"


def test_problems_are_capped_and_linear(tmp_path, capsys):
    path = tmp_path / "many.yaml"
    path.write_text("name: many\nmodel:\n" + "".join(f"  k{i}: 1\n" for i in range(3000)))
    assert main(["validate", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == SweepFileError.MAX_SHOWN + 1 and "and 2950 more problems" in lines[-1]
