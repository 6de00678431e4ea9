"""Speed of the analysis chain on a paper-sized trajectory: 25,000 frames x 50 atoms (50 ps at 2 fs).

Run: ``.venv/bin/python -m benchmarks.analysis``. Prints a table; the last line is one JSON object.

* ``analysis_seconds_25k_frames``: RDF (every ``RDF_FRAME_STRIDE``-th frame) + RDF MAE + MSD +
  diffusive window and the diffusion check + D + σ + the windowed RDF MAE over time (1 ps windows)
  + stability (minimum distance over every frame, the test against the reference's RDF noise), on
  in-memory arrays; D's interval (the GLS fit) included. Goal < 1 s.
* ``reference_noise_seconds_25k_frames``: the reference's block RDFs and noise constants
  (``analysis.verdicts.reference_at``), made once per reference and temperature, not per run.
* ``speedup_vs_diffusionanalyzer``: pymatgen's ``DiffusionAnalyzer.from_structures(structures, "Li",
  T, 2, 1, smoothed="max")`` (structures built beforehand, not timed) divided by our MSD -> D -> σ
  with the same settings. Goal >= 20x.
* ``read_seconds_25k_frames``: ``mlff.trajectory.read_trajectory`` of the file written by
  ``TrajectoryWriter``. Goal < 1 s.
* ``speedup_vs_kinisi``: kinisi 2.1.0's D with its interval (``DiffusionAnalyzer.from_ase`` then
  ``diffusion``: GLS with the MSD's covariance, then MCMC; frames built beforehand, not timed) divided by our
  MSD -> GLS D with its interval (``transport.diffusivity_interval``) on the first ``KINISI_FRAMES`` frames,
  fitted from the same start; kinisi does not finish 25,000 frames in minutes. Goal >= 10x.

One core: the BLAS thread count is pinned through the environment before numpy is imported (this
script only; numpy's FFT is single-threaded anyway), which needs no threadpoolctl.
Times are CPU seconds of this process (``time.process_time``), the best of ``REPEATS``
(DiffusionAnalyzer: one run): with every thread pool pinned to one thread that is the work of one
core, and unlike wall time it does not grow when other jobs share the machine.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from analysis.settings import AnalysisSettings  # noqa: E402
from analysis.verdicts import Reference, RunFrames, assess_run, reference_at  # noqa: E402
from analysis.transport import (  # noqa: E402
    carrier_positions_A,
    conductivity_mS_cm,
    diffusivity_interval,
    diffusivity_like_diffusion_analyzer_cm2_s,
    mean_square_displacement,
    msd_of_positions_A2,
)
from mlff.trajectory import TrajectoryWriter, read_trajectory  # noqa: E402

N_FRAMES = 25_000
TIMESTEP_FS = 2.0
TEMPERATURE_K = 1000.0
CELL_A = np.diag([8.72, 8.72, 12.63])  # Li10GeP2S12 conventional cell
NUMBERS = np.array([3] * 20 + [32] * 2 + [15] * 4 + [16] * 24)  # Li20 Ge2 P4 S24, 50 atoms
RDF_FRAME_STRIDE = 100  # 250 of 25,000 frames: frames 200 fs apart are nearly uncorrelated
RDF_R_MAX_A, RDF_N_BINS = 6.0, 60
ANALYSIS_SETTINGS = AnalysisSettings.model_validate({"rdf": {
    "r_max_A": RDF_R_MAX_A, "n_bins": RDF_N_BINS, "pairs": [["Li", "S"], ["P", "S"]], "frame_stride": RDF_FRAME_STRIDE}})
LITHIUM = 3
REPEATS = 3
KINISI_FRAMES = 1000  # a length kinisi finishes in seconds
HOP_ATTEMPT_FS = 1000.0  # mean time between hop attempts of one Li
HOP_FS = 150.0  # duration of one hop (Li moves ~0.02 Å/fs)


def synthetic_trajectory(seed: int = 0) -> np.ndarray:
    """[N_FRAMES, 50, 3] wrapped positions of a lattice gas that is smooth in time like MD.

    The cell holds a 4 x 4 x 4 grid of sites (2.2-3.2 Å apart); the 30 framework atoms sit on
    random sites, the 20 Li on others, 14 sites stay vacant. Every atom vibrates about its site
    (three sinusoids with 100-400 fs periods, 0.1 Å amplitude). Each Li attempts a hop to a random
    neighbouring site every ``HOP_ATTEMPT_FS`` on average; if that site is vacant it moves there
    linearly over ``HOP_FS``. No two atoms ever share a site, so nothing fuses.
    """
    rng = np.random.default_rng(seed)
    n_atoms = len(NUMBERS)
    grid = np.stack(np.meshgrid(*3 * [np.arange(4)], indexing="ij"), axis=-1).reshape(-1, 3)  # [64, 3]
    site_of_atom = rng.permutation(len(grid))[:n_atoms]
    occupied = np.zeros(len(grid), dtype=bool)
    occupied[site_of_atom] = True
    li = np.flatnonzero(NUMBERS == 3)
    hop_frames = int(HOP_FS / TIMESTEP_FS)
    frac = np.empty((N_FRAMES, n_atoms, 3))
    frac[:] = (grid[site_of_atom] + 0.5) / 4.0
    start_frame = np.full(n_atoms, -1)
    source = np.zeros((n_atoms, 3))
    target = np.zeros((n_atoms, 3))
    attempts = rng.random((N_FRAMES, len(li))) < TIMESTEP_FS / HOP_ATTEMPT_FS
    for frame in range(1, N_FRAMES):
        frac[frame] = frac[frame - 1]
        for k in np.flatnonzero(attempts[frame]):
            atom = li[k]
            if start_frame[atom] >= 0:
                continue
            axis, step = rng.integers(3), rng.choice([-1, 1])
            here = grid[site_of_atom[atom]]
            there = here.copy()
            there[axis] = (there[axis] + step) % 4
            site = int(np.ravel_multi_index(there, (4, 4, 4)))
            if not occupied[site]:
                occupied[site_of_atom[atom]], occupied[site] = False, True
                site_of_atom[atom] = site
                start_frame[atom] = frame
                source[atom] = frac[frame - 1, atom]
                target[atom] = source[atom]
                target[atom, axis] += step / 4.0
        moving = np.flatnonzero(start_frame >= 0)
        progress = (frame - start_frame[moving]) / hop_frames
        frac[frame, moving] = source[moving] + progress[:, None] * (target[moving] - source[moving])
        start_frame[moving[progress >= 1.0]] = -1
    time_fs = np.arange(N_FRAMES)[:, None, None] * TIMESTEP_FS
    period_fs = rng.uniform(100.0, 400.0, size=(n_atoms, 3))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n_atoms, 3))
    positions = frac @ CELL_A + 0.1 * np.sin(2 * np.pi * time_fs / period_fs + phase)  # [N_FRAMES, n_atoms, 3]
    return (positions @ np.linalg.inv(CELL_A)) % 1.0 @ CELL_A


def _best_of(function) -> tuple[float, object]:
    times, result = [], None
    for _ in range(REPEATS):
        start = time.process_time()
        result = function()
        times.append(time.process_time() - start)
    return min(times), result


def transport_chain(positions_A: np.ndarray) -> float:
    """Our MSD -> D -> σ with DiffusionAnalyzer's settings (framework drift removed, "max" smoothing)."""
    li = NUMBERS == LITHIUM
    msd = mean_square_displacement(positions_A, CELL_A, "wrapped", atom_mask=li, framework_mask=~li)
    d_cm2_s, _ = diffusivity_like_diffusion_analyzer_cm2_s(msd, TIMESTEP_FS, int(li.sum()))
    return conductivity_mS_cm(d_cm2_s, int(li.sum()), abs(np.linalg.det(CELL_A)), TEMPERATURE_K)


def _frames(positions_A: np.ndarray, path: str) -> RunFrames:
    time_fs = np.arange(len(positions_A)) * TIMESTEP_FS
    return RunFrames(path, positions_A, time_fs, positions_A, time_fs, CELL_A, NUMBERS, 0, None)


def full_analysis(positions_A: np.ndarray, reference: Reference) -> dict:
    """What the analyze stage does per run (``analysis.verdicts.assess_run``: RDF + MAE, MSD, diffusive
    window and the diffusion check, D, σ, smallest distance, the windowed RDF MAE that dates a collapse,
    and the stability test against the reference's noise)."""
    assessed = assess_run(_frames(positions_A, "run"), TEMPERATURE_K, ANALYSIS_SETTINGS, reference, None, 0.0)
    measured = assessed.measured
    return {"D_cm2_s": measured.diffusivity_cm2_s, "sigma_mS_cm": measured.conductivity_mS_cm,
            "diffusive": measured.verdict.diffusive, "windows": len(measured.collapse.window_maes),
            "stability": assessed.stability, "resolution": assessed.rdf_mae_resolution}


def diffusion_analyzer_seconds(positions_A: np.ndarray) -> tuple[float, float]:
    from pymatgen.analysis.diffusion.analyzer import DiffusionAnalyzer
    from pymatgen.core import Lattice, Structure

    lattice = Lattice(CELL_A)
    species = [{3: "Li", 32: "Ge", 15: "P", 16: "S"}[int(z)] for z in NUMBERS]
    structures = [Structure(lattice, species, frame, coords_are_cartesian=True) for frame in positions_A]
    start = time.process_time()
    analyzer = DiffusionAnalyzer.from_structures(structures, "Li", TEMPERATURE_K, TIMESTEP_FS, 1, smoothed="max")
    return time.process_time() - start, float(analyzer.conductivity)


def interval_chain(positions_A: np.ndarray, start_fs: float) -> tuple[float, float, float]:
    """Our MSD -> GLS D with its 95 % interval, fitted from ``start_fs`` to half the run: (D, low, high) in cm²/s."""
    li = NUMBERS == LITHIUM
    carriers = carrier_positions_A(positions_A, CELL_A, "wrapped", atom_mask=li, framework_mask=~li)
    time_fs = np.arange(len(positions_A)) * TIMESTEP_FS
    fit = diffusivity_interval(carriers, msd_of_positions_A2(carriers), time_fs, start_fs, time_fs[-1] / 2)
    return fit.diffusivity_cm2_s, fit.low_cm2_s, fit.high_cm2_s


def kinisi_seconds(positions_A: np.ndarray, start_fs: float) -> tuple[float, tuple[float, float, float]]:
    """kinisi's D (median and 95 % of its samples) and the CPU seconds it took, from the same start."""
    import ase
    import scipp as sc
    from kinisi.analyze import DiffusionAnalyzer

    frames = [ase.Atoms(numbers=NUMBERS, positions=frame, cell=CELL_A, pbc=True) for frame in positions_A]
    start = time.process_time()
    analyzer = DiffusionAnalyzer.from_ase(frames, specie="Li", time_step=sc.scalar(TIMESTEP_FS, unit="fs"),
                                          step_skip=sc.scalar(1, unit="dimensionless"), progress=False)
    analyzer.diffusion(sc.scalar(start_fs, unit="fs"), progress=False, random_state=np.random.RandomState(0))
    seconds = time.process_time() - start
    low, median, high = np.percentile(analyzer.D.values, [2.5, 50, 97.5])
    return seconds, (float(median), float(low), float(high))


def main() -> None:
    positions_A = synthetic_trajectory()
    # The reference: other frames of the same run (halfway between the analysed ones), its noise measured once.
    reference_s, reference = _best_of(
        lambda: reference_at([_frames(positions_A[RDF_FRAME_STRIDE // 2 :], "reference")], ANALYSIS_SETTINGS))
    analysis_s, outcome = _best_of(lambda: full_analysis(positions_A, reference))
    ours_s, sigma_ours = _best_of(lambda: transport_chain(positions_A))
    theirs_s, sigma_theirs = diffusion_analyzer_seconds(positions_A)
    short = positions_A[:KINISI_FRAMES]
    start_fs = KINISI_FRAMES * TIMESTEP_FS / 8
    interval_s, d_ours = _best_of(lambda: interval_chain(short, start_fs))
    kinisi_s, d_kinisi = kinisi_seconds(short, start_fs)

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "benchmark.frames"
        with TrajectoryWriter(path, NUMBERS, CELL_A, fields=[]) as writer:
            for index, frame in enumerate(positions_A):
                writer.append(index, index * TIMESTEP_FS, frame)
        read_s, trajectory = _best_of(lambda: read_trajectory(path))
    if not np.allclose(trajectory.positions_A, positions_A, atol=1e-9):
        raise RuntimeError("the trajectory read back differs from the one written")

    figures = {
        "analysis_seconds_25k_frames": round(analysis_s, 4),
        "reference_noise_seconds_25k_frames": round(reference_s, 4),
        "speedup_vs_diffusionanalyzer": round(theirs_s / ours_s, 1),
        "read_seconds_25k_frames": round(read_s, 4),
        "speedup_vs_kinisi": round(kinisi_s / interval_s, 1),
    }
    rows = [
        (f"full analysis (RDF stride {RDF_FRAME_STRIDE}, MSD, verdict, D and its interval, σ, 1 ps RDF windows, "
         "stability test)", f"{analysis_s:.3f} s", "< 1 s"),
        ("the reference's RDF noise (once per reference and temperature)", f"{reference_s:.3f} s", ""),
        ("our MSD -> D -> σ (DiffusionAnalyzer settings)", f"{ours_s:.3f} s", ""),
        ("DiffusionAnalyzer.from_structures", f"{theirs_s:.3f} s", ""),
        ("speedup vs DiffusionAnalyzer", f"{theirs_s / ours_s:.1f}x", ">= 20x"),
        ("read 25k-frame .frames file", f"{read_s:.3f} s", "< 1 s"),
        ("σ ours / DiffusionAnalyzer", f"{sigma_ours:.4g} / {sigma_theirs:.4g} mS/cm", "within 2 %"),
        (f"our MSD -> GLS D with interval, {KINISI_FRAMES} frames", f"{interval_s:.3f} s", ""),
        (f"kinisi D with interval, {KINISI_FRAMES} frames", f"{kinisi_s:.3f} s", ""),
        ("speedup vs kinisi", f"{kinisi_s / interval_s:.1f}x", ">= 10x"),
        ("D [95 %] ours, 1e-5 cm²/s", "{:.3g} [{:.3g}, {:.3g}]".format(*(1e5 * v for v in d_ours)), ""),
        ("D [95 %] kinisi, 1e-5 cm²/s", "{:.3g} [{:.3g}, {:.3g}]".format(*(1e5 * v for v in d_kinisi)), ""),
        ("stability of the synthetic run, and the test's resolution", f"{outcome['stability']}, "
         f"{outcome['resolution']:.4f}", ""),
        ("diffusive / windows of 1 ps", f"{outcome['diffusive']} / {outcome['windows']}", ""),
    ]
    width = max(len(name) for name, _, _ in rows)
    print(f"{'measure':<{width}}  {'value':>24}  goal")
    for name, value, goal in rows:
        print(f"{name:<{width}}  {value:>24}  {goal}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
