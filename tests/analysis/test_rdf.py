import numpy as np
import pytest
from ase import Atoms
from ase.geometry.rdf import get_rdf

from analysis.rdf import RDF, rdf, rdf_mae

# Small triclinic Li-P-S cell with "irrational" lattice lengths (so no lattice vector lands
# exactly on a bin edge, where ceil(d/dr) would be decided by round-off).
SMALL_CELL = np.array([[5.03, 0.0, 0.0], [1.21, 4.87, 0.0], [0.71, -0.93, 5.37]])
SMALL_NUMBERS = np.array([3, 3, 3, 16, 16, 15, 3, 16])
PAIRS = [("Li", "S"), ("S", "Li"), ("S", "S"), ("P", "S"), ("Li", "Li")]


def _small_trajectory(n_frames=4, seed=0):
    rng = np.random.default_rng(seed)
    # perturbed 2x2x2 grid of sites, so no two atoms are unphysically close
    grid = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)]) / 2 + 0.25
    base = (grid + rng.normal(0, 0.03, grid.shape)) @ SMALL_CELL
    return base[None] + rng.normal(0, 0.12, (n_frames, len(base), 3))


def _supercell(frames, cell, numbers, reps):
    shifts = np.array(
        [[i, j, k] for i in range(reps[0]) for j in range(reps[1]) for k in range(reps[2])]
    ) @ cell
    big = (frames[:, None, :, :] + shifts[None, :, None, :]).reshape(len(frames), -1, 3)
    return big, np.diag(reps) @ cell, np.tile(numbers, len(shifts))


def test_matches_ase_get_rdf_total_and_partials():
    # r_max = 6 Å is beyond half the small cell's width (~2.4 Å). ASE needs a cell enclosing
    # the r_max sphere, so it sees the 3x3x3 supercell (widths >= 14.4 Å). We compare our RDF
    # of both the small cell and the supercell to ASE on the supercell.
    frames = _small_trajectory()
    big, big_cell, big_numbers = _supercell(frames, SMALL_CELL, SMALL_NUMBERS, (3, 3, 3))
    images = [Atoms(numbers=big_numbers, positions=p, cell=big_cell, pbc=True) for p in big]
    r_max, n_bins = 6.0, 60
    ours_small = rdf(frames, SMALL_CELL, SMALL_NUMBERS, r_max, n_bins, pairs=PAIRS)
    ours_big = rdf(big, big_cell, big_numbers, r_max, n_bins, pairs=PAIRS)
    for label, elements in [("total", None)] + [(f"{a}-{b}", (a, b)) for a, b in PAIRS]:
        g_ase, r_ase = get_rdf(images, r_max, n_bins, elements=elements)
        np.testing.assert_allclose(ours_small.r_A, r_ase, atol=1e-12)
        assert np.abs(ours_small.g[label] - g_ase).max() < 1e-3, label
        assert np.abs(ours_big.g[label] - g_ase).max() < 1e-3, label
        assert g_ase.max() > 0.5  # the comparison is not between empty histograms


def test_small_cell_beyond_half_width_equals_2x2x2_supercell():
    frames = _small_trajectory(n_frames=3, seed=5)
    # lattice vectors with arbitrary (random) offsets: unwrapped input must be fine too
    frames = frames + np.random.default_rng(9).integers(-2, 3, frames.shape[:2] + (3,)) @ SMALL_CELL
    big, big_cell, big_numbers = _supercell(frames, SMALL_CELL, SMALL_NUMBERS, (2, 2, 2))
    r_max, n_bins = 7.5, 75  # > the supercell's half width too
    small = rdf(frames, SMALL_CELL, SMALL_NUMBERS, r_max, n_bins, pairs=PAIRS)
    sup = rdf(big, big_cell, big_numbers, r_max, n_bins, pairs=PAIRS)
    assert set(small.g) == {"total"} | {f"{a}-{b}" for a, b in PAIRS}
    for label in small.g:
        np.testing.assert_allclose(small.g[label], sup.g[label], rtol=1e-9, atol=1e-9)
    # images of the cell itself matter here: a minimum-image-only RDF would lose the
    # neighbours beyond half a width and decay to 0; ours stays near 1 at large r.
    assert np.mean(small.g["total"][-20:]) == pytest.approx(1.0, abs=0.2)


def test_partials_are_consistent_with_total():
    # g = sum_ab c_a c_b g_ab, and g_ab == g_ba (the ASE >= 3.27 / LAMMPS convention)
    frames = _small_trajectory(seed=2)
    symbols = {3: "Li", 15: "P", 16: "S"}
    pairs = [(symbols[a], symbols[b]) for a in symbols for b in symbols]
    res = rdf(frames, SMALL_CELL, SMALL_NUMBERS, 6.0, 40, pairs=pairs)
    conc = {symbols[z]: np.mean(SMALL_NUMBERS == z) for z in symbols}
    recombined = sum(conc[a] * conc[b] * res.g[f"{a}-{b}"] for a, b in pairs)
    np.testing.assert_allclose(recombined, res.g["total"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res.g["Li-S"], res.g["S-Li"], rtol=1e-12)


def test_frame_stride_averages_the_selected_frames():
    frames = _small_trajectory(n_frames=7, seed=4)
    strided = rdf(frames, SMALL_CELL, SMALL_NUMBERS, 5.0, 25, pairs=[("Li", "S")], frame_stride=3)
    explicit = rdf(frames[[0, 3, 6]], SMALL_CELL, SMALL_NUMBERS, 5.0, 25, pairs=[("Li", "S")])
    per_frame = [rdf(frames[[i]], SMALL_CELL, SMALL_NUMBERS, 5.0, 25).g["total"] for i in (0, 3, 6)]
    for label in strided.g:
        np.testing.assert_allclose(strided.g[label], explicit.g[label], rtol=1e-12)
    np.testing.assert_allclose(strided.g["total"], np.mean(per_frame, axis=0), rtol=1e-12)


def test_unknown_or_absent_element_raises():
    frames = _small_trajectory(n_frames=1)
    with pytest.raises(ValueError, match="Ge"):
        rdf(frames, SMALL_CELL, SMALL_NUMBERS, 4.0, 10, pairs=[("Li", "Ge")])
    with pytest.raises(ValueError, match="unknown element"):
        rdf(frames, SMALL_CELL, SMALL_NUMBERS, 4.0, 10, pairs=[("Li", "Xx")])


def test_an_ideal_gas_in_an_lgps_cell_has_g_of_one():
    """Speed is measured by benchmarks.analysis; here, uniform random positions give g = 1."""
    rng = np.random.default_rng(0)
    cell = np.diag([8.72, 8.72, 12.63])
    numbers = np.array([3] * 20 + [32] * 2 + [15] * 4 + [16] * 24)
    positions = rng.random((2500, 50, 3)) @ cell
    res = rdf(positions, cell, numbers, 6.0, 120, pairs=[("Li", "S"), ("P", "S")], frame_stride=10)
    assert np.mean(res.g["total"][60:]) == pytest.approx(1.0, abs=0.05)


# ---------------------------------------------------------------- rdf_mae


def _rdf(r, **g):
    return RDF(r_A=np.asarray(r, dtype=float), g={k: np.asarray(v, dtype=float) for k, v in g.items()})


def test_kernel_spreads_a_pair_as_a_gaussian_in_the_shells():
    """One pair at d, σ = 0.1 Å: g is the histogram's g convolved with the Gaussian (module docstring): bin k gets
    the Gaussian's mass in it times the g of the pair's own bin. The pair sits on a counting-bin centre (σ/4 wide
    bins: 0.025 Å), so the expectation is exact."""
    import math

    d_A, width_A, r_max_A, n_bins = 2.5375, 0.1, 6.0, 120
    cell = np.eye(3) * 30.0
    positions = np.array([[[1.0, 1.0, 1.0], [1.0 + d_A, 1.0, 1.0]]])
    plain = rdf(positions, cell, [3, 16], r_max_A, n_bins)
    smooth = rdf(positions, cell, [3, 16], r_max_A, n_bins, kernel_width_A=width_A)
    edges = np.linspace(0.0, r_max_A, n_bins + 1)
    own = int(np.ceil(d_A / (r_max_A / n_bins))) - 1
    cdf = np.array([0.5 * (1 + math.erf((e - d_A) / (width_A * math.sqrt(2)))) for e in edges])
    expected = plain.g["total"][own] * np.diff(cdf)
    np.testing.assert_allclose(smooth.g["total"], expected, rtol=1e-9, atol=1e-12)
    assert np.sum(smooth.g["total"]) == pytest.approx(np.sum(plain.g["total"]), rel=1e-9)  # the area under g


def test_kernel_keeps_an_ideal_gas_at_g_of_one():
    rng = np.random.default_rng(1)
    cell = np.diag([8.72, 8.72, 12.63])
    numbers = np.array([3] * 20 + [16] * 30)
    positions = rng.random((400, 50, 3)) @ cell
    plain = rdf(positions, cell, numbers, 6.0, 60, pairs=[("Li", "S")])
    smooth = rdf(positions, cell, numbers, 6.0, 60, pairs=[("Li", "S")], kernel_width_A=0.1)
    for label in ("total", "Li-S"):
        assert np.mean(smooth.g[label][20:]) == pytest.approx(1.0, abs=0.02)
        # smoother: the bin-to-bin scatter falls
        assert np.std(np.diff(smooth.g[label][20:])) < 0.5 * np.std(np.diff(plain.g[label][20:]))


def test_rdf_mae_identical_is_zero():
    frames = _small_trajectory()
    g = rdf(frames, SMALL_CELL, SMALL_NUMBERS, 5.0, 50, pairs=[("Li", "S")])
    assert rdf_mae(g, g) == 0.0


def test_rdf_mae_known_shift_and_label_averaging():
    r = np.linspace(0.05, 5.95, 60)
    base = np.exp(-((r - 2.4) ** 2))
    ref = _rdf(r, total=base, **{"Li-S": 2 * base, "P-S": base})
    # total shifted by 0.03 everywhere, Li-S by 0.01 on half the bins; P-S only in reference
    li_s = 2 * base + np.where(np.arange(60) < 30, 0.01, 0.0)
    g = _rdf(r, total=base + 0.03, **{"Li-S": li_s})
    assert rdf_mae(g, ref) == pytest.approx((0.03 + 0.005) / 2, rel=1e-12)
    assert rdf_mae(_rdf(r, total=base - 0.03), ref) == pytest.approx(0.03, rel=1e-12)


def test_rdf_mae_errors():
    r = np.linspace(0.05, 5.95, 60)
    ref = _rdf(r, total=np.ones(60))
    with pytest.raises(ValueError, match="grid"):
        rdf_mae(_rdf(r[:-1], total=np.ones(59)), ref)
    with pytest.raises(ValueError, match="grid"):
        rdf_mae(_rdf(r * 1.01, total=np.ones(60)), ref)
    with pytest.raises(ValueError, match="Li-S"):
        rdf_mae(_rdf(r, total=np.ones(60), **{"Li-S": np.ones(60)}), ref)
