"""The quick benchmark runs end to end and writes every section; no timing is asserted."""
import json
import math

import pytest

pytest.importorskip("torch")
pytest.importorskip("threadpoolctl")

from benchmarks import run  # noqa: E402


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_quick_benchmark_writes_every_section(tmp_path):
    run.run(quick=True, out=tmp_path, threads=1, log=lambda *_: None, sections=["kernels"])
    res = json.loads((tmp_path / "latest.json").read_text())
    assert {"machine", "config", "matmul", "throughput", "layers", "conv_rate", "memory", "autotune",
            "targets"} <= set(res)
    assert res["machine"]["cpu"] and res["machine"]["numpy"] and res["machine"]["threads"] == 1
    assert res["machine"]["cpu_flags"] is not None and isinstance(res["machine"]["simd_flags"], list)

    assert _positive(res["matmul"]["peak_flops_per_s"])
    rows = res["throughput"]["rows"]
    assert len(rows) == len(res["config"]["archs"]) * len(res["config"]["batches"])
    for row in rows:
        for key in ("numpy_images_per_s", "torch_images_per_s", "ratio"):
            assert _positive(row[key]), (row["arch"], key)
        assert row["max_logit_diff"] < 1e-3, "the PyTorch twin must compute the same network"
        assert set(row["algorithms"]) == {"block1.conv", "block2.conv"}
        assert all("/" in a and "-" not in a.split("/") for a in row["algorithms"].values())
    assert _positive(res["throughput"]["summary"]["geomean_ratio"])

    for arch, prof in res["layers"]["archs"].items():
        assert _positive(prof["step_s"])
        assert all(r["forward_s"] >= 0 and r["backward_s"] >= 0 for r in prof["layers"])
        assert any(r["layer"].endswith(".conv") for r in prof["layers"])
    assert res["conv_rate"]["rows"] and all(_positive(r["gflops"]) for r in res["conv_rate"]["rows"])
    for row in res["autotune"]["rows"]:  # quick layers are too small to measure: zero or more seconds
        assert row["autotune_s"] >= 0 and _positive(row["lecture_trial_s"]) and 0 <= row["share"] < 1
    for key in ("throughput_ok", "conv_rate_ok", "autotune_ok", "memory_ok"):
        assert isinstance(res["targets"][key], bool), key
    for row in res["memory"]["rows"]:
        assert _positive(row["peak_bytes"]) and _positive(row["need_bytes"]) and _positive(row["ratio"])

    md = (tmp_path / "latest.md").read_text()
    for heading in ("throughput", "Autotune cost", "Convolution rate", "Peak memory", "Where a NumPy step goes",
                    "SIMD flags"):
        assert heading in md


@pytest.mark.slow
def test_quick_sweep_section_measures_efficiency_and_overhead(tmp_path, ray_local, mlflow_uri):
    """The sweep section on the session's Ray and MLflow store (so no migrations): about 15 s."""
    res = run.run(quick=True, out=tmp_path, log=lambda *_: None, sections=["sweep"], tracking_uri=mlflow_uri)
    sw = json.loads((tmp_path / "latest.json").read_text())["sweep"]
    assert res["sections"] == ["sweep"] and "throughput" not in res
    assert sw["trials"] == sw["config"]["trials_per_cpu"] * sw["cpus"] == len(sw["trial_seconds"])
    for key in ("T1", "wall_seconds", "call_seconds", "efficiency", "efficiency_own_times", "pool_efficiency"):
        assert _positive(sw[key]), key
    assert math.isfinite(sw["overhead_per_trial"])
    b = sw["breakdown"]
    # The parts add up to the overhead: W x CPUs = N x T1 + what went elsewhere.
    assert b["total_per_trial"] == pytest.approx(sw["overhead_per_trial"], abs=0.1)
    assert 1 <= b["worker_processes"] <= sw["trials"]
    # The driver wrote every trial's epochs, checkpoints and end to MLflow (sweeper/trials/stream.py).
    assert all(b["driver_seconds"].get(f"record_{k}", 0) > 0 for k in ("Started", "EpochDone", "Checkpoint", "Ended"))
    targets = {"sweep_efficiency", "sweep_efficiency_ok", "sweep_overhead_per_trial", "sweep_overhead_ok"}
    assert targets <= set(res["targets"])
    md = (tmp_path / "latest.md").read_text()
    assert "Sweep efficiency" in md and "where it went, per trial" in md


@pytest.mark.slow
def test_quick_paging_section_compares_plain_and_paged_reads(tmp_path, ray_local):
    res = run.run(quick=True, out=tmp_path, log=lambda *_: None, sections=["paging"])
    p = json.loads((tmp_path / "latest.json").read_text())["paging"]
    assert p["paged_in_worker"] and p["images"] == 3000
    for mode in ("plain", "paged"):
        assert _positive(p[mode]["epoch_seconds"]) and _positive(p[mode]["max_rss_mib"])
    assert res["targets"]["paging_time_ratio"] == p["time_ratio"]
    assert "Reading the shared data paged" in (tmp_path / "latest.md").read_text()


def test_quick_colour_section_trains_both_frameworks_on_generated_cifar_files(tmp_path):
    """The colour section on a generated CIFAR-10-format set: both frameworks, 3 seeds, a verdict."""
    res = run.run(quick=True, out=tmp_path, log=lambda *_: None, sections=["colour"])
    c = json.loads((tmp_path / "latest.json").read_text())["colour"]
    assert c["generated"] and "generated set in CIFAR-10's binary format" in c["source"]
    assert len(c["runs"]["core"]) == len(c["runs"]["torch"]) == 3
    for r in c["runs"]["core"] + c["runs"]["torch"]:
        assert 0 <= r["test_accuracy"] <= 1 and all(_positive(s) for s in r["epoch_seconds"])
    assert _positive(c["time_ratio"]) and isinstance(c["within_noise"], bool)
    assert res["targets"]["colour_within_noise"] == c["within_noise"]
    md = (tmp_path / "latest.md").read_text()
    assert "Colour images: the core against PyTorch" in md and "seed-noise" in md


def test_colour_section_reads_real_cifar_files_when_pointed_at_them(tmp_path):
    from benchmarks import colour

    folder = colour.write_cifar_format(tmp_path / "cifar", train=100, test=40, seed=3)
    res = colour.run(quick=True, cifar=str(folder), epochs=1, seeds=2, log=lambda *_: None)
    assert not res["generated"] and str(folder) in res["source"] and res["train_images"] == 100
    assert len(res["runs"]["core"]) == 2


def test_colour_verdict_compares_the_difference_with_seed_noise():
    from benchmarks.colour import compare

    close = compare([0.80, 0.82, 0.78], [0.81, 0.80, 0.79])
    assert close["within_noise"] and close["difference"] == pytest.approx(0.0)
    assert close["noise_band"] == pytest.approx(2 * ((0.02 ** 2 + 0.01 ** 2) / 3) ** 0.5)
    far = compare([0.90, 0.91, 0.90], [0.80, 0.81, 0.80])
    assert not far["within_noise"] and far["paired_interval"][0] > 0


def test_merge_keeps_the_other_sections(tmp_path):
    """``--merge``: the kernel sections rerun, the others' figures kept from the earlier results."""
    (tmp_path / "latest.json").write_text(json.dumps({
        "machine": {"date": "earlier", "note": "quiet"}, "sections": ["kernels", "sweep"],
        "throughput": {"old": True}, "sweep": {"efficiency": 0.9}, "targets": {"sweep_efficiency": 0.9,
                                                                                "throughput_ok": False}}))
    res = run.merged({"machine": {"date": "now"}, "sections": ["kernels"], "throughput": {"new": True},
                      "targets": {"throughput_ok": True}}, tmp_path / "latest.json")
    assert res["sections"] == ["kernels", "sweep"] and res["sweep"] == {"efficiency": 0.9}
    assert res["throughput"] == {"new": True}
    assert res["targets"] == {"sweep_efficiency": 0.9, "throughput_ok": True}
    assert "sweep kept from the run of earlier" in res["machine"]["note"]


def test_search_section_runs_quick(tmp_path):
    from benchmarks import run

    res = run.run(quick=True, out=tmp_path, log=lambda *_: None, sections=["search"])
    s = json.loads((tmp_path / "latest.json").read_text())["search"]
    assert set(s["medians"]) == {"random", "sobol", "tpe", "optuna_tpe"} and s["trained"] >= 4
    assert "## Search: best validation accuracy" in (tmp_path / "latest.md").read_text()
    assert "search_tpe_vs_random" in res["targets"]
