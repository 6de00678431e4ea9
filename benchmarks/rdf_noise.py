"""What the Gaussian RDF kernel does to the stability test: its floor and resolution at the demo's and the
paper's lengths, with and without the kernel.

Run: ``.venv/bin/python -m benchmarks.rdf_noise [--runs-dir DIR]``. The reference is CHGNet MD of the 50-atom
LGPS cell at 800 K (ramp 0.1 ps, 2 fs steps, every step a frame), ``N_RUNS`` runs of ``PRODUCTION_PS`` each:
the demo's reference. They are generated into ``--runs-dir`` the first time (about 3 minutes on 2 cores) and
read from there after.

For each RDF setting (the demo's: Li–S and P–S partials, 60 bins, every 2nd frame; the paper's: total +
Li–S, P–S, Ge–S, 120 bins, every frame; both to 6 Å) and kernel width, it prints the noise floor and the
resolution of ``analysis.rdf_noise`` (5 % false alarms) for a run against the reference:

* at the demo's length: a 0.5 ps run against the 2 runs' 1 ps, the noise measured on those runs;
* at the paper's: a 35 ps run against 3 runs of 35 ps, by the noise model's √(1/L + 1/R) scaling of the same
  measured noise constants (an extrapolation: no 35 ps run is made here);

and the ratio of each to the histogram's (kernel 0). Speed is printed too: the reference's block RDFs, once.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tabulate import tabulate

from analysis.settings import AnalysisSettings
from analysis.verdicts import reference_at
from mlff.md.protocol import MDProtocol
from mlff.reference import generate_reference
from mlff.structures import load_structure
from mlff.trajectory import read_trajectory
from workflows.stages.analyze import run_frames

N_RUNS, PRODUCTION_PS, TEMPERATURE_K = 2, 0.5, 800.0
DEMO_RUN_PS, PAPER_RUN_PS, PAPER_RUNS = 0.5, 35.0, 3
KERNEL_WIDTHS_A = (0.0, 0.05, 0.1, 0.2)
RDF_SETTINGS = {
    "demo": {"r_max_A": 6.0, "n_bins": 60, "pairs": [["Li", "S"], ["P", "S"]], "frame_stride": 2},
    "paper": {"r_max_A": 6.0, "n_bins": 120, "pairs": [["Li", "S"], ["P", "S"], ["Ge", "S"]], "frame_stride": 1},
}


def reference_runs(runs_dir: Path) -> list[Path]:
    """The CHGNet LGPS runs, generated the first time."""
    paths = []
    for seed in range(N_RUNS):
        path = runs_dir / f"lgps-{TEMPERATURE_K:g}K-{seed}.frames"
        if not path.exists():
            protocol = MDProtocol(temperature_K=TEMPERATURE_K, ramp_ps=0.1, production_ps=PRODUCTION_PS)
            generate_reference(load_structure("LGPS"), "chgnet", protocol, seed, path, progress=False, device="cpu")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", type=Path, default=Path("benchmark-runs"), help="where the reference runs are")
    args = parser.parse_args()
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    frames = [run_frames(read_trajectory(path), str(path), 0.0) for path in reference_runs(args.runs_dir)]
    total_ps = sum(run.sampled_ps for run in frames)
    rows = []
    for name, rdf in RDF_SETTINGS.items():
        baseline = None
        for width_A in KERNEL_WIDTHS_A:
            settings = AnalysisSettings.model_validate({"rdf": {**rdf, "kernel_width_A": width_A}})
            start = time.process_time()
            noise = reference_at(frames, settings).noise
            seconds = time.process_time() - start
            figures = (noise.floor(DEMO_RUN_PS, total_ps), noise.resolution(DEMO_RUN_PS, total_ps),
                       noise.floor(PAPER_RUN_PS, PAPER_RUNS * PAPER_RUN_PS),
                       noise.resolution(PAPER_RUN_PS, PAPER_RUNS * PAPER_RUN_PS))
            baseline = baseline or figures
            rows.append([name, width_A, *(f"{value:.4f} ({value / base:.2f})" for value, base in zip(figures, baseline,
                                                                                                       strict=True)),
                         len(noise.constants), f"{seconds:.2f}"])
    print(tabulate(rows, headers=["RDF", "kernel (Å)", "floor 0.5 ps", "resolution 0.5 ps", "floor 35 ps",
                                  "resolution 35 ps", "samples", "CPU s"]))
    print("(in brackets: the ratio to the histogram's, kernel 0)")


if __name__ == "__main__":
    main()
