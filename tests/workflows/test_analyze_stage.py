"""The analyze stage fits D only in the diffusive regime of the MSD, and records that window."""

import numpy as np
import pytest

from mlff.trajectory import TrajectoryWriter
from records.units import A2_PER_FS_TO_CM2_PER_S, FS_PER_PS
from workflows.inputs import AnalyzeInputs
from workflows.stages.analyze import analyze

CELL_A = np.diag([80.0, 80.0, 80.0])  # dilute: few close pairs keep the stability check cheap
FRAME_FS = 10.0
N_FRAMES = 3000  # 30 ps
N_LI = 400
VELOCITY_MEMORY_FS = 200.0  # τ of the Ornstein–Uhlenbeck velocity: ballistic below, diffusive well above
VELOCITY_VARIANCE_A2_FS2 = 2e-5  # per Cartesian component


def _langevin_trajectory(path, seed: int) -> float:
    """Li whose velocities are an Ornstein–Uhlenbeck process (4 static S as framework); returns the exact D in cm²/s.

    Per axis the displacement per frame u_n = v_n Δ is an AR(1) series with variance s² = σ_v² Δ² and
    correlation a^k, a = exp(−Δ/τ), so MSD(t) -> 2 D t with D = s² (1 + a) / (1 − a) / (2 Δ): ballistic
    (MSD ∝ t²) for t << τ and diffusive for t >> τ.
    """
    rng = np.random.default_rng(seed)
    a = np.exp(-FRAME_FS / VELOCITY_MEMORY_FS)
    velocity = rng.normal(0.0, np.sqrt(VELOCITY_VARIANCE_A2_FS2), size=(N_LI, 3))  # [N_LI, 3] Å/fs, stationary start
    li_A = rng.uniform(0.0, 1.0, size=(N_LI, 3)) @ CELL_A
    s_A = np.array([[5.0, 5.0, 5.0], [20.0, 5.0, 5.0], [5.0, 20.0, 20.0], [20.0, 20.0, 20.0]])
    numbers = np.array([3] * N_LI + [16] * len(s_A))
    with TrajectoryWriter(path, numbers, CELL_A, fields=[]) as writer:
        for frame in range(N_FRAMES):
            writer.append(frame, frame * FRAME_FS, np.concatenate([li_A % CELL_A.diagonal(), s_A]))
            li_A = li_A + velocity * FRAME_FS
            velocity = a * velocity + rng.normal(0.0, np.sqrt(VELOCITY_VARIANCE_A2_FS2 * (1 - a * a)), size=velocity.shape)
    s2_A2 = VELOCITY_VARIANCE_A2_FS2 * FRAME_FS**2
    return s2_A2 * (1 + a) / (1 - a) / (2 * FRAME_FS) * A2_PER_FS_TO_CM2_PER_S


def test_analyze_records_the_diffusive_window_and_recovers_d(tmp_path):
    d_true_cm2_s = _langevin_trajectory(tmp_path / "run.frames", seed=3)
    outcome = analyze(AnalyzeInputs(
        source="langevin", material="LiS", runs=[{"path": str(tmp_path / "run.frames"), "temperature_K": 1000.0}],
        references=[], discard_ps=0.0, rdf={"r_max_A": 5.0, "n_bins": 10, "pairs": [], "frame_stride": 100},
        rdf_mae_threshold=0.02, fusion_distance_A=0.5, diffusing_specie="Li", target_temperature_K=300.0,
        out_dir=str(tmp_path / "analyze"),
    ))
    run = outcome["results"][0]
    tau_ps = VELOCITY_MEMORY_FS / FS_PER_PS
    assert run["msd_fit_start_ps"] >= 5 * tau_ps  # past the ballistic crossover
    assert run["msd_fit_end_ps"] <= N_FRAMES * FRAME_FS / FS_PER_PS / 2
    assert run["msd_fit_end_ps"] / run["msd_fit_start_ps"] >= 3.0
    assert run["msd_loglog_slope"] == pytest.approx(1.0, abs=0.1)
    # 400 independent walkers over 150 velocity memory times: D's relative scatter is ~4 % between seeds.
    assert run["diffusivity_cm2_s"] == pytest.approx(d_true_cm2_s, rel=0.12)
    # D's 95 % interval (the GLS fit) holds the truth and is a few per cent wide, as 400 walkers allow.
    assert run["diffusivity_cm2_s_low"] < d_true_cm2_s < run["diffusivity_cm2_s_high"]
    assert run["diffusivity_cm2_s_high"] / run["diffusivity_cm2_s_low"] < 1.3
    assert run["conductivity_mS_cm_low"] < run["conductivity_mS_cm"] < run["conductivity_mS_cm_high"]


def test_analyze_leaves_d_out_when_there_is_no_diffusive_window(tmp_path):
    numbers = np.array([3, 16])
    with TrajectoryWriter(tmp_path / "short.frames", numbers, CELL_A, fields=[]) as writer:
        for frame in range(5):  # lags 1..2 span only 2x in time
            writer.append(frame, frame * FRAME_FS, np.array([[1.0 + 0.1 * frame, 1.0, 1.0], [10.0, 10.0, 10.0]]))
    run = analyze(AnalyzeInputs(
        source="short", material="LiS", runs=[{"path": str(tmp_path / "short.frames"), "temperature_K": 1000.0}],
        references=[], discard_ps=0.0, rdf={"r_max_A": 5.0, "n_bins": 10, "pairs": [], "frame_stride": 1},
        rdf_mae_threshold=0.02, fusion_distance_A=0.5, diffusing_specie="Li", target_temperature_K=300.0,
        out_dir=str(tmp_path / "analyze"),
    ))["results"][0]
    assert run["diffusivity_cm2_s"] is None and run["msd_fit_start_ps"] is None and run["conductivity_mS_cm"] is None
