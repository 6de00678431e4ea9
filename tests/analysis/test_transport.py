import numpy as np
import pytest

from analysis import transport
from analysis.transport import (
    ArrheniusFit,
    carrier_positions_A,
    conductivity_at_mS_cm,
    conductivity_mS_cm,
    diffusivity_interval,
    diffusivity_like_diffusion_analyzer_cm2_s,
    extrapolate_arrhenius,
    fit_arrhenius,
    mean_square_displacement,
    msd_of_positions_A2,
    unwrap,
)
from records.units import BOLTZMANN_EV_K

CELL = np.array([[7.31, 0.0, 0.0], [1.47, 6.93, 0.0], [-0.82, 1.16, 8.05]])  # triclinic


def _wrap(positions, cell):
    frac = (positions @ np.linalg.inv(cell)) % 1.0
    return frac @ cell


# ---------------------------------------------------------------- unwrap / MSD


def test_constant_velocity_msd_is_v2_t2():
    rng = np.random.default_rng(0)
    n_frames, n_atoms = 300, 5
    v = rng.normal(0, 0.1, (n_atoms, 3))  # Å per frame, different per atom
    x0 = rng.random((n_atoms, 3)) @ CELL
    t = np.arange(n_frames)
    pos = x0[None] + t[:, None, None] * v[None]
    msd = mean_square_displacement(pos, CELL, "unwrapped")
    expected = np.mean(np.sum(v**2, axis=1)) * t**2
    np.testing.assert_allclose(msd, expected, rtol=1e-9, atol=1e-9 * expected.max())


def test_wrapped_constant_velocity_crossing_boundaries_unwraps_exactly():
    rng = np.random.default_rng(1)
    n_frames, n_atoms = 400, 4
    v = rng.uniform(0.15, 0.3, (n_atoms, 3)) * rng.choice([-1, 1], (n_atoms, 3))
    x0 = rng.random((n_atoms, 3)) @ CELL
    pos = x0[None] + np.arange(n_frames)[:, None, None] * v[None]
    wrapped = _wrap(pos, CELL)
    frac = pos @ np.linalg.inv(CELL)
    assert np.all(np.abs(frac[-1] - frac[0]) > 3)  # every atom crossed >= 3 cell boundaries
    np.testing.assert_allclose(unwrap(wrapped, CELL), pos - (np.floor(frac[:1]) @ CELL), atol=1e-9)
    msd_w = mean_square_displacement(wrapped, CELL, "wrapped")
    msd_u = mean_square_displacement(pos, CELL, "unwrapped")
    np.testing.assert_allclose(msd_w, msd_u, rtol=1e-9, atol=1e-9)
    expected = np.mean(np.sum(v**2, axis=1)) * np.arange(n_frames) ** 2
    np.testing.assert_allclose(msd_w, expected, rtol=1e-9, atol=1e-9 * expected.max())


@pytest.mark.parametrize("chunk_frames", [1, 7, 399, 400, 512])
def test_unwrapping_chunk_by_chunk_is_exact_at_every_chunk_size(monkeypatch, chunk_frames):
    monkeypatch.setattr(transport, "STEP_CHUNK_FRAMES", chunk_frames)
    rng = np.random.default_rng(7)
    pos = rng.random((1, 6, 3)) @ CELL + np.cumsum(rng.normal(0, 0.4, (400, 6, 3)), axis=0)  # crosses boundaries
    wrapped = _wrap(pos, CELL)
    frac = pos @ np.linalg.inv(CELL)
    np.testing.assert_allclose(unwrap(wrapped, CELL), pos - (np.floor(frac[:1]) @ CELL), atol=1e-9)
    mobile, framework = [0, 1, 2], [3, 4, 5]
    msd_w = mean_square_displacement(wrapped, CELL, "wrapped", atom_mask=mobile, framework_mask=framework)
    msd_u = mean_square_displacement(pos, CELL, "unwrapped", atom_mask=mobile, framework_mask=framework)
    np.testing.assert_allclose(msd_w, msd_u, rtol=1e-9, atol=1e-9)


def test_msd_matches_direct_time_origin_average():
    rng = np.random.default_rng(2)
    pos = np.cumsum(rng.normal(0, 0.2, (60, 7, 3)), axis=0)
    msd = mean_square_displacement(pos, CELL, "unwrapped", atom_mask=[0, 2, 5])
    sel = pos[:, [0, 2, 5]]
    direct = [np.mean(np.sum((sel[m:] - sel[: len(sel) - m]) ** 2, axis=-1)) for m in range(60)]
    np.testing.assert_allclose(msd, direct, rtol=1e-10, atol=1e-12)


def test_random_walk_msd_is_n_sigma2():
    rng = np.random.default_rng(3)
    n_frames, n_atoms, sigma = 2000, 200, 0.1  # σ per Cartesian component, Å
    steps = rng.normal(0, sigma, (n_frames - 1, n_atoms, 3))
    pos = np.concatenate([np.zeros((1, n_atoms, 3)), np.cumsum(steps, axis=0)])
    msd = mean_square_displacement(pos, CELL, "unwrapped")
    lags = np.array([1, 5, 20, 50, 100])
    step_variance = 3 * sigma**2  # variance of a 3-D step
    # ~1e5+ independent-ish samples per lag: a few % is many standard errors
    np.testing.assert_allclose(msd[lags], lags * step_variance, rtol=0.05)


def test_framework_drift_is_removed():
    rng = np.random.default_rng(4)
    n_frames = 500
    li = np.cumsum(rng.normal(0, 0.1, (n_frames, 10, 3)), axis=0)
    framework = rng.random((12, 3)) @ CELL + rng.normal(0, 0.05, (n_frames, 12, 3))
    drift = np.cumsum(rng.normal(0.01, 0.05, (n_frames, 3)), axis=0)  # whole cell drifts
    pos = np.concatenate([li, framework], axis=1)
    li_mask = np.arange(22) < 10
    reference = mean_square_displacement(pos, CELL, "unwrapped", atom_mask=li_mask,
                                         framework_mask=~li_mask)
    drifted = mean_square_displacement(pos + drift[:, None], CELL, "unwrapped", atom_mask=li_mask,
                                       framework_mask=~li_mask)
    np.testing.assert_allclose(drifted, reference, rtol=1e-9, atol=1e-9)
    uncorrected = mean_square_displacement(pos + drift[:, None], CELL, "unwrapped", atom_mask=li_mask)
    assert uncorrected[-100] > 1.5 * reference[-100]


def test_coordinates_argument_is_validated():
    rng = np.random.default_rng(5)
    pos = np.cumsum(rng.normal(0, 0.3, (50, 3, 3)), axis=0) + 20.0  # outside the cell
    with pytest.raises(ValueError, match="coordinates"):
        mean_square_displacement(pos, CELL, "cartesian")
    with pytest.raises(ValueError, match="not wrapped"):
        mean_square_displacement(pos, CELL, "wrapped")
    with pytest.raises(ValueError, match="not wrapped"):
        unwrap(pos, CELL)
    # wrapped data with boundary crossings passed as "unwrapped" is caught
    wrapped = _wrap(np.cumsum(rng.normal(0, 1.0, (200, 3, 3)), axis=0), CELL)
    with pytest.raises(ValueError, match="wrapped"):
        mean_square_displacement(wrapped, CELL, "unwrapped")


# ---------------------------------------------------------------- diffusivity / conductivity


def test_conductivity_nernst_einstein_by_hand():
    # σ = n e² D / (V k_B T): 20 Li in 960 Å³ at 600 K with D = 1e-5 cm²/s, k_B in J/K from ASE's
    # CODATA 2014 value in eV/K (records.units)
    e = 1.602176634e-19
    kb = 8.6173303e-5 * e
    expected_S_cm = 20 * e**2 * 1e-5 / (960e-24 * kb * 600)
    assert conductivity_mS_cm(1e-5, 20, 960.0, 600.0) == pytest.approx(1e3 * expected_S_cm, rel=1e-8)
    assert conductivity_mS_cm(1e-5, 20, 960.0, 600.0, charge=2) == pytest.approx(
        4e3 * expected_S_cm, rel=1e-8
    )


def _li_s_trajectory(seed=7, n_frames=400, n_li=16, n_s=16):
    """Li random walkers in a jittering, drifting S framework; wrapped Cartesian positions."""
    rng = np.random.default_rng(seed)
    cell = np.diag([10.3, 10.3, 10.8])
    s_sites = rng.random((n_s, 3)) @ cell
    drift = np.cumsum(rng.normal(0.0, 0.02, (n_frames, 3)), axis=0)
    s = s_sites[None] + rng.normal(0, 0.05, (n_frames, n_s, 3)) + drift[:, None]
    li = rng.random((n_li, 3)) @ cell + np.cumsum(rng.normal(0, 0.25, (n_frames, n_li, 3)), axis=0)
    li = li + drift[:, None]
    positions = _wrap(np.concatenate([li, s], axis=1), cell)
    return positions, cell, ["Li"] * n_li + ["S"] * n_s


def test_matches_pymatgen_diffusion_analyzer():
    from pymatgen.analysis.diffusion.analyzer import DiffusionAnalyzer
    from pymatgen.core import Lattice, Structure

    positions, cell, species = _li_s_trajectory()
    temperature_K, time_step_fs, step_skip = 600, 2, 10
    lattice = Lattice(cell)
    structures = [Structure(lattice, species, p, coords_are_cartesian=True) for p in positions]
    analyzer = DiffusionAnalyzer.from_structures(
        structures, "Li", temperature_K, time_step_fs, step_skip, smoothed="max"
    )

    li = np.array([s == "Li" for s in species])
    msd = mean_square_displacement(positions, cell, "wrapped", atom_mask=li, framework_mask=~li)
    d, d_err = diffusivity_like_diffusion_analyzer_cm2_s(msd, time_step_fs * step_skip, int(li.sum()))
    sigma = conductivity_mS_cm(d, int(li.sum()), abs(np.linalg.det(cell)), temperature_K)

    assert analyzer.diffusivity > 1e-6  # a real, diffusing system
    assert d == pytest.approx(analyzer.diffusivity, rel=0.02)
    assert sigma == pytest.approx(analyzer.conductivity, rel=0.02)
    assert 0 < d_err < 0.5 * d
    # Same MSD, same lag window, same 1/t-weighted fit: agreement is to round-off, not just 2 %.
    lags = np.rint(analyzer.dt / (time_step_fs * step_skip)).astype(int)
    np.testing.assert_allclose(msd[lags], analyzer.msd, rtol=1e-9)
    assert d == pytest.approx(analyzer.diffusivity, rel=1e-8)


def test_diffusion_analyzer_window_needs_enough_data():
    with pytest.raises(ValueError, match="not enough data"):
        diffusivity_like_diffusion_analyzer_cm2_s(np.zeros(40), 20.0, 16)  # 800 fs < 1 ps


# ---------------------------------------------------------------- Arrhenius


def test_fit_arrhenius_exact_data():
    temps = np.array([600.0, 700.0, 800.0, 1000.0, 1200.0])
    ea, prefactor = 0.23, 4.5e-3
    values = prefactor * np.exp(-ea / (BOLTZMANN_EV_K * temps))
    fit = fit_arrhenius(temps, values)
    assert fit.activation_energy_eV == pytest.approx(ea, abs=1e-10)
    assert fit.prefactor == pytest.approx(prefactor, rel=1e-10)
    assert fit.activation_energy_stderr_eV < 1e-10
    assert extrapolate_arrhenius(fit, 300.0) == pytest.approx(
        prefactor * np.exp(-ea / (BOLTZMANN_EV_K * 300.0)), rel=1e-9
    )


def test_fit_arrhenius_noisy_data_recovers_ea():
    rng = np.random.default_rng(11)
    temps = np.linspace(500.0, 1200.0, 8)
    ea = 0.21
    values = 1e-3 * np.exp(-ea / (BOLTZMANN_EV_K * temps)) * np.exp(rng.normal(0, 0.05, temps.size))
    fit = fit_arrhenius(temps, values)
    assert fit.activation_energy_stderr_eV > 0
    assert abs(fit.activation_energy_eV - ea) < 3 * fit.activation_energy_stderr_eV
    assert fit.activation_energy_eV == pytest.approx(ea, abs=0.03)


def test_fit_arrhenius_point_count():
    fit = fit_arrhenius([600.0, 900.0], [1e-6, 1e-5])
    assert np.isnan(fit.activation_energy_stderr_eV)
    assert fit.activation_energy_eV == pytest.approx(
        np.log(10) * BOLTZMANN_EV_K / (1 / 600 - 1 / 900), rel=1e-12
    )
    with pytest.raises(ValueError, match="at least 2"):
        fit_arrhenius([600.0], [1e-6])
    with pytest.raises(ValueError, match="> 0"):
        fit_arrhenius([600.0, 900.0], [1e-6, -1e-5])


def test_conductivity_at_300K_follows_pymatgen_convention():
    from pymatgen.analysis.diffusion.analyzer import get_extrapolated_conductivity
    from pymatgen.core import Lattice, Structure

    temps = [600.0, 800.0, 1000.0, 1200.0]
    diffusivities = [2.1e-6, 7.9e-6, 1.6e-5, 2.9e-5]
    structure = Structure(Lattice.tetragonal(8.72, 12.63), ["Li"] * 20 + ["S"] * 24,
                          np.random.default_rng(0).random((44, 3)))
    expected = get_extrapolated_conductivity(temps, diffusivities, 300.0, structure, "Li")
    sigma, fit = conductivity_at_mS_cm(temps, diffusivities, 300.0, 20, structure.volume)
    assert isinstance(fit, ArrheniusFit)
    assert sigma == pytest.approx(expected, rel=1e-6)  # pymatgen's k_B is CODATA 2018's, ours 2014's (3.4e-7 apart)
    d300 = extrapolate_arrhenius(fit, 300.0)
    assert sigma == pytest.approx(conductivity_mS_cm(d300, 20, structure.volume, 300.0), rel=1e-12)


# --------------------------------------------------------------------------- D with its interval (GLS)


def test_gls_intervals_cover_the_true_d_from_a_few_hops_to_many():
    """400 walks of 20 carriers, 0.5 to 100 hops each on average (10 to 2000 among them): 95 % intervals cover
    the true D in 95 ± 3 % of the walks, at every length and over all."""
    from random_walks import hopping_walk

    rng = np.random.default_rng(2023)
    covered = {}
    for hops_per_atom in (0.5, 2.0, 8.0, 30.0, 100.0):
        for _ in range(80):
            positions, time_fs, d_true = hopping_walk(rng, 1000, 20, hops_per_atom)
            end_fs = time_fs[-1] / 2
            fit = diffusivity_interval(positions, msd_of_positions_A2(positions), time_fs, end_fs / 4, end_fs)
            covered.setdefault(hops_per_atom, []).append(fit.low_cm2_s <= d_true <= fit.high_cm2_s)
    every = [c for runs in covered.values() for c in runs]
    assert abs(np.mean(every) - 0.95) <= 0.03, {k: np.mean(v) for k, v in covered.items()}
    assert all(np.mean(runs) >= 0.85 for runs in covered.values()), {k: np.mean(v) for k, v in covered.items()}


def test_the_interval_is_wide_with_few_hops_and_narrow_with_many():
    from random_walks import hopping_walk

    rng = np.random.default_rng(7)
    widths = {}
    for hops_per_atom in (0.5, 100.0):
        positions, time_fs, d_true = hopping_walk(rng, 1000, 20, hops_per_atom)
        fit = diffusivity_interval(positions, msd_of_positions_A2(positions), time_fs, time_fs[-1] / 8, time_fs[-1] / 2)
        widths[hops_per_atom] = (fit.high_cm2_s - fit.low_cm2_s) / fit.diffusivity_cm2_s
        assert fit.low_cm2_s > 0
    assert widths[0.5] > 1.0 and widths[100.0] < 0.6  # ~10 hops: a Poisson count's ±60 %; 2000: ±20 %


@pytest.mark.slow
def test_gls_d_and_its_interval_agree_with_kinisi():
    """kinisi 2.1.0 (GLS with the MSD's covariance, then MCMC) on the same trajectories, fitted from the same start
    (its default end: the whole run; lags every 10 frames keep it fast): D within 20 %, and the mean width of the
    95 % intervals within 20 %."""
    import ase
    import scipp as sc
    from kinisi.analyze import DiffusionAnalyzer
    from random_walks import hopping_walk

    rng = np.random.default_rng(11)
    cell_A, frame_fs, ratios = 40.0, 20.0, []
    for _ in range(4):
        positions, time_fs, _ = hopping_walk(rng, 600, 20, 40.0, frame_fs=frame_fs)
        start_fs = time_fs[-1] / 8
        ours = diffusivity_interval(positions, msd_of_positions_A2(positions), time_fs, start_fs, time_fs[-1] / 2)
        frames = [ase.Atoms(numbers=[3] * 20 + [16], positions=np.vstack([frame, [[1.0, 1.0, 1.0]]]) % cell_A,
                            cell=[cell_A] * 3, pbc=True) for frame in positions]
        lags_fs = np.arange(10, len(frames), 10) * frame_fs
        analyzer = DiffusionAnalyzer.from_ase(
            frames, specie="Li", time_step=sc.scalar(frame_fs, unit="fs"), step_skip=sc.scalar(1, unit="dimensionless"),
            dt=sc.array(dims=["time interval"], values=lags_fs, unit="fs"), progress=False)
        analyzer.diffusion(sc.scalar(start_fs, unit="fs"), progress=False, random_state=np.random.RandomState(0))
        samples = analyzer.D.values
        low, high = np.percentile(samples, [2.5, 97.5])
        assert ours.diffusivity_cm2_s == pytest.approx(np.median(samples), rel=0.2)
        ratios.append((ours.high_cm2_s - ours.low_cm2_s) / (high - low))
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.2), ratios


def test_gls_d_agrees_with_diffusion_analyzer_on_a_long_diffusive_walk():
    """Li random walks in a drifting S framework (``_li_s_trajectory``): the GLS D is within 5 % of pymatgen's
    ``DiffusionAnalyzer`` (smoothed="max") on the same frames."""
    from pymatgen.analysis.diffusion.analyzer import DiffusionAnalyzer
    from pymatgen.core import Lattice, Structure

    positions, cell, species = _li_s_trajectory()
    frame_fs = 20.0
    structures = [Structure(Lattice(cell), species, p, coords_are_cartesian=True) for p in positions]
    analyzer = DiffusionAnalyzer.from_structures(structures, "Li", 600, 2, 10, smoothed="max")
    li = np.array([s == "Li" for s in species])
    carriers = carrier_positions_A(positions, cell, "wrapped", atom_mask=li, framework_mask=~li)
    time_fs = np.arange(len(positions)) * frame_fs
    ours = diffusivity_interval(carriers, msd_of_positions_A2(carriers), time_fs, 1000.0, time_fs[-1] / 2)
    assert ours.diffusivity_cm2_s == pytest.approx(analyzer.diffusivity, rel=0.05)
    assert ours.low_cm2_s < analyzer.diffusivity < ours.high_cm2_s
