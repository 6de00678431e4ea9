"""The GPU check: its dry run on CPU, its comparison with the paper's Table 1, and its wheel list."""

from __future__ import annotations

import configparser
import json
import subprocess
import sys

import pytest
import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from benchmarks.gpu_check import PLANS, RESULT_FILE, benchmark_part, compare
from benchmarks.md_throughput import ns_per_day
from repo_paths import ROOT

TABLE_1_SCHNET_REPLICA_STEPS_PER_S = 22.5 / ns_per_day(1.0)  # the paper's 22.5 ns/day in 2 fs steps


@pytest.mark.slow
def test_dry_run_on_cpu_writes_one_json_with_every_part(tmp_path):
    subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--out", str(tmp_path)],
                   cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)
    assert [path.name for path in tmp_path.iterdir()] == [RESULT_FILE]
    result = json.loads((tmp_path / RESULT_FILE).read_text())
    assert result["dry_run"] and result["environment"]["torch"] == torch.__version__
    parts = result["parts"]
    assert list(parts) == ["gpu_tests", "md_throughput_schnet", "md_throughput_dimenet++", "models"]
    assert {name: part["status"] for name, part in parts.items()} == dict.fromkeys(parts, "passed")
    tests = parts["gpu_tests"]
    assert tests["failed"] == tests["errors"] == 0 and tests["failures"] == []
    assert tests["passed" if torch.cuda.is_available() else "skipped"] >= 11  # test_cuda_matches_cpu, per model
    for key in ("replica_steps_per_s_1_quickstart", "replica_steps_per_s_2_quickstart"):
        assert parts["md_throughput_schnet"]["figures"][key] > 0
        assert parts["md_throughput_dimenet++"]["figures"][f"{key}_dimenet++"] > 0
    assert set(parts["models"]["figures"]) == {"schnet", "dimenet++"}
    assert all(model["forward_backward_ms"] > 0 for model in parts["models"]["figures"].values())
    # Quickstart size only: nothing is set beside Table 1, and no goal is judged.
    assert len(result["table_1"]) == 11 and result["table_1"]["cgcnn"]["one_replica_ns_per_day"] is None
    assert result["goals"] and all(goal["value"] is None and goal["met"] is None for goal in result["goals"].values())
    assert result["peak_gpu_memory_GiB"] is None


def test_a_part_that_fails_or_runs_out_of_time_is_recorded_with_its_output():
    passed = benchmark_part([sys.executable, "-c", "print('table'); print('{\"x\": 1.5}')"], 60)
    assert passed["status"] == "passed" and passed["figures"] == {"x": 1.5}
    failed = benchmark_part([sys.executable, "-c", "raise SystemExit('out of memory')"], 60)
    assert failed["status"] == "failed" and failed["exit_code"] == 1 and "out of memory" in failed["output_tail"]
    slow = benchmark_part([sys.executable, "-c", "import time; print('first row', flush=True); time.sleep(60)"], 2)
    assert slow["status"] == "timed_out" and slow["wall_s"] < 30 and "first row" in slow["output_tail"]
    assert "figures" not in failed and "figures" not in slow


def test_table_1_comparison_and_goals_from_the_parts_figures():
    one = 2 * TABLE_1_SCHNET_REPLICA_STEPS_PER_S  # twice Table 1's SchNet speed
    schnet = {"replica_steps_per_s_1_paper": one, "replica_steps_per_s_6_paper": 5 * one,
              "replica_steps_per_s_30_paper": 12 * one, "replica_steps_per_s_90_paper": 11 * one,
              "batched_speedup_90_quickstart": 25.0}
    dimenet_pp = {"replica_steps_per_s_1_paper_dimenet++": 1.0, "replica_steps_per_s_90_paper_dimenet++": 30.0}
    parts = {
        "md_throughput_schnet": {"status": "passed", "figures": schnet},
        "md_throughput_dimenet++": {"status": "passed", "figures": dimenet_pp},
        "models": {"status": "passed", "figures": {"cgcnn": {"md_replica_steps_per_s": 1.0}}},
        "models_equivariant": {"status": "timed_out"},
    }
    table_1, goals = compare(parts, PLANS["cuda"])
    assert table_1["schnet"]["md_throughput_one_replica_vs_table_1"] == pytest.approx(2.0)
    assert table_1["schnet"]["aggregate_replicas"] == 30  # the best aggregate, not the most replicas
    assert table_1["schnet"]["aggregate_vs_table_1"] == pytest.approx(24.0)
    assert table_1["dimenet++"]["aggregate_ns_per_day"] == pytest.approx(ns_per_day(30.0))
    assert table_1["cgcnn"]["one_replica_ns_per_day"] == pytest.approx(ns_per_day(1.0))
    assert table_1["escn"]["one_replica_ns_per_day"] is None  # its part timed out
    assert goals["one_replica_vs_table_1_schnet"]["met"] is True
    assert goals["one_replica_vs_table_1_cgcnn"] == {
        "value": pytest.approx(ns_per_day(1.0) / 45.0), "goal": 1.0, "met": False, "source": "models",
    }
    assert goals["one_replica_vs_table_1_dimenet"]["met"] is None  # not measured
    assert goals["batched_90_vs_1_quickstart_schnet"]["met"] is True
    assert goals["aggregate_vs_table_1_paper_schnet"]["met"] is True
    assert goals["aggregate_vs_table_1_paper_dimenet++"]["met"] is False


def test_the_gpu_wheels_are_pinned_within_setup_cfg_and_leave_torch_to_the_machine():
    lines = [line.split("#")[0].strip() for line in (ROOT / "benchmarks" / "gpu_wheels.txt").read_text().splitlines()]
    wheels = {canonicalize_name(r.name): r.specifier for r in map(Requirement, filter(None, lines))}
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    required = [Requirement(line) for line in setup["options"]["install_requires"].split("\n") if line.strip()]
    assert "torch" not in wheels and "vesin-torch" not in wheels  # the machine's own torch, nothing built against it
    assert all(len(specifier) == 1 and next(iter(specifier)).operator == "==" for specifier in wheels.values())
    for requirement in required:
        name = canonicalize_name(requirement.name)
        if name in wheels:
            assert next(iter(wheels[name])).version in requirement.specifier, name
