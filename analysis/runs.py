"""What one MD run measures: its RDF and RDF MAE, its smallest interatomic distance, and the diffusing
element's MSD -> diffusive window -> D -> σ. Pure numpy over a run's arrays.

The campaign's analyze stage (workflows/stages.py) and ``campaign analyze`` both call ``analyse_run``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.rdf import CHEMICAL_SYMBOLS, RDF, rdf, rdf_mae
from analysis.stability import min_distance_A
from analysis.statistics import DiffusiveWindow, diffusive_window
from analysis.transport import conductivity_mS_cm, diffusivity_cm2_s, mean_square_displacement


@dataclass(frozen=True)
class RDFSettings:
    """How RDFs are computed: range, bins, the partials wanted (those whose elements are present) and frame stride."""

    r_max_A: float
    n_bins: int
    pairs: Sequence[tuple[str, str]] = ()
    frame_stride: int = 1


@dataclass(frozen=True)
class RunAnalysis:
    """What ``analyse_run`` measures of one MD run (None where it cannot be measured)."""

    rdf: RDF | None  # of the production frames, when there is a reference to compare with
    rdf_mae: float | None
    min_distance_A: float | None  # over every finite frame, the ramp included
    window: DiffusiveWindow | None  # where the MSD is fitted
    diffusivity_cm2_s: float | None
    conductivity_mS_cm: float | None


def material_rdf(positions_A, cell_A, numbers, settings: RDFSettings) -> RDF:
    """Total RDF plus the requested partials whose elements the structure has."""
    present = {CHEMICAL_SYMBOLS[z] for z in np.unique(numbers)}
    pairs = [tuple(pair) for pair in settings.pairs if set(pair) <= present]
    return rdf(positions_A, cell_A, numbers, settings.r_max_A, settings.n_bins, pairs=pairs,
               frame_stride=settings.frame_stride)


def analyse_run(
    positions_A: np.ndarray,
    production_A: np.ndarray,
    production_time_fs: np.ndarray,
    cell_A: np.ndarray,
    numbers: np.ndarray,
    temperature_K: float,
    specie: int,
    reference: RDF | None,
    rdf_settings: RDFSettings,
) -> RunAnalysis:
    """Measure one run from its finite frames ``positions_A`` [n_frames, n_atoms, 3] and its production
    frames ``production_A`` [n_production, n_atoms, 3] at ``production_time_fs`` [n_production]
    (wrapped positions, fixed ``cell_A``): the RDF and its MAE against ``reference``, the smallest
    interatomic distance, and the MSD of element ``specie`` (atomic number; the rest is the
    framework, whose drift is removed) fitted in its diffusive window for D and σ at ``temperature_K``.
    """
    smallest = float(min_distance_A(positions_A, cell_A).min()) if len(positions_A) else None
    mask = numbers == specie
    window = d_cm2_s = sigma = None
    if len(production_A) >= 3 and mask.any():
        framework = ~mask
        msd = mean_square_displacement(
            production_A, cell_A, coordinates="wrapped", atom_mask=mask,
            framework_mask=framework if framework.any() else None,
        )
        time_fs = production_time_fs - production_time_fs[0]
        try:  # the ballistic start and long, noisy lags are left out of the fit
            window = diffusive_window(msd, time_fs)
        except ValueError:  # too few frames, or an MSD that is zero at some lag: no diffusive regime to fit
            window = None
        if window is not None:
            d_cm2_s, _ = diffusivity_cm2_s(msd, time_fs, window.start_fs, window.end_fs)
            volume_A3 = abs(float(np.linalg.det(cell_A)))
            sigma = conductivity_mS_cm(d_cm2_s, int(mask.sum()), volume_A3, temperature_K)
    curve = r_mae = None
    if len(production_A) and reference is not None:
        curve = material_rdf(production_A, cell_A, numbers, rdf_settings)
        r_mae = rdf_mae(curve, reference)
    return RunAnalysis(curve, r_mae, smallest, window, d_cm2_s, sigma)
