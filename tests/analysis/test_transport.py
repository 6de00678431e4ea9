import numpy as np
import pytest

from analysis import transport
from analysis.transport import (
    ArrheniusFit,
    conductivity_at_mS_cm,
    conductivity_mS_cm,
    diffusivity_cm2_s,
    diffusivity_like_diffusion_analyzer_cm2_s,
    extrapolate_arrhenius,
    fit_arrhenius,
    mean_square_displacement,
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


def test_diffusivity_from_linear_msd():
    t = np.arange(0, 20000, 20.0)  # fs
    d_true = 3.2e-5  # cm²/s
    slope = 6 * d_true / 0.1  # Å²/fs
    msd = slope * t + 0.7  # offset (ballistic/vibrational) must not matter
    d, err = diffusivity_cm2_s(msd, t, fit_start_fs=1000.0)
    assert d == pytest.approx(d_true, rel=1e-10)
    assert err == pytest.approx(0.0, abs=1e-15)
    # dimensions and fit window
    d2, _ = diffusivity_cm2_s(msd, t, 1000.0, fit_end_fs=5000.0, dimensions=2)
    assert d2 == pytest.approx(d_true * 3 / 2, rel=1e-10)
    noisy = msd + np.random.default_rng(0).normal(0, 0.5, t.size)
    d3, err3 = diffusivity_cm2_s(noisy, t, 1000.0)
    assert err3 > 0 and abs(d3 - d_true) < 5 * err3
    with pytest.raises(ValueError, match="window"):
        diffusivity_cm2_s(msd, t, fit_start_fs=1e6)


def test_conductivity_nernst_einstein_by_hand():
    # σ = n e² D / (V k_B T): 20 Li in 960 Å³ at 600 K with D = 1e-5 cm²/s
    e, kb = 1.602176634e-19, 1.380649e-23
    expected_S_cm = 20 * e**2 * 1e-5 / (960e-24 * kb * 600)
    assert conductivity_mS_cm(1e-5, 20, 960.0, 600.0) == pytest.approx(1e3 * expected_S_cm, rel=1e-12)
    assert conductivity_mS_cm(1e-5, 20, 960.0, 600.0, charge=2) == pytest.approx(
        4e3 * expected_S_cm, rel=1e-12
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
    # the plain Einstein fit over the same lag window is close but not the same estimator
    t = np.arange(len(msd)) * time_step_fs * step_skip
    d_ols, _ = diffusivity_cm2_s(msd, t, 1000.0, fit_end_fs=t[len(msd) * 16 // 30 - 1])
    assert d_ols == pytest.approx(analyzer.diffusivity, rel=0.3)


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
    assert sigma == pytest.approx(expected, rel=1e-9)
    d300 = extrapolate_arrhenius(fit, 300.0)
    assert sigma == pytest.approx(conductivity_mS_cm(d300, 20, structure.volume, 300.0), rel=1e-12)
