"""Radial distribution functions of periodic trajectories (fixed cell), pure numpy.

Definition / normalisation (the same as ``ase.geometry.rdf.get_rdf`` in ASE >= 3.27,
which agrees with LAMMPS ``compute rdf``):

* Bins: ``n_bins`` equal bins of width ``dr = r_max / n_bins`` on ``[0, r_max]``; a pair at
  distance ``d`` goes into bin ``k = ceil(d / dr)`` (1-based), i.e. bin ``k`` is the half-open
  interval ``((k-1)·dr, k·dr]``. Pairs with ``d == 0`` (including an atom with itself) and
  ``d > r_max`` are not counted. ``r_A`` are the bin midpoints.
* Counts are over *ordered* pairs ``(i, j)`` and over every periodic image of ``j`` (including
  images of ``i`` itself), so nothing is lost when ``r_max`` exceeds half the cell width.
* Partial ``"A-B"``: ``g_AB(r_k) = n_AB(k) / (N_A · ρ_B · V_shell(k))`` with ``n_AB(k)`` the
  number of ordered pairs (centre of element A, neighbour of element B) in bin ``k``,
  ``ρ_B = N_B / V_cell`` and ``V_shell(k) = 4π/3 (r_k³ − r_{k-1}³)`` the exact shell volume.
  Hence ``g_AB == g_BA`` and ``g = Σ_AB c_A c_B g_AB``.
* Total: the same with all atoms as centres and neighbours, ``N · (N / V_cell)``.
* Several frames: the mean of the per-frame RDFs (ASE's convention). With a fixed cell the
  normalisation is the same for every frame, so this equals total counts / n_frames / norm.
* Gaussian kernel (``kernel_width_A`` = σ > 0; 0 is the histogram above): each pair at distance d
  adds to bin k, instead of 1 to its own bin K, the mass of a Gaussian N(d, σ²) in bin k (the mass
  below r = 0 reflected back) times ``V_shell(k) / V_shell(K)``: in g it adds to each bin what it
  adds to its own bin in the histogram, spread. So g is the histogram's g convolved with the
  Gaussian: the area under g is kept, and an ideal gas stays at g = 1. Pairs out to r_max + 5σ are counted, each placed at the centre of a counting bin
  of width ≤ σ/4 (at most 64 to an RDF bin).

The computation is split, like MDAnalysis ``InterRDF._single_frame`` / ``_conclude``, into
:func:`accumulate_pair_counts` (histogram counts of a block of frames, summable over
blocks) and :func:`normalise_pair_counts` (counts -> g(r)), so a streaming caller can feed
frames in chunks and normalise once at the end. :func:`rdf` is the one-shot wrapper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

__all__ = [
    "RDF",
    "rdf",
    "block_rdfs",
    "rdf_mae",
    "mean_rdf",
    "accumulate_pair_counts",
    "normalise_pair_counts",
    "species_indices",
    "perpendicular_widths_A",
    "image_shifts",
    "CHEMICAL_SYMBOLS",
]

# Index = atomic number (index 0 is a placeholder), as in ase.data.chemical_symbols.
CHEMICAL_SYMBOLS: tuple[str, ...] = tuple(
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn "
    "Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce "
    "Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn "
    "Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl "
    "Mc Lv Ts Og".split()
)

# RDF range and bins: defaults and bounds (the spec's analysis.rdf and `campaign analyze`). Beyond
# MAX_R_MAX_A the pair-image vectors of a 50-atom cell run into the hundreds of millions.
DEFAULT_R_MAX_A, MAX_R_MAX_A = 6.0, 20.0
DEFAULT_N_BINS, MIN_N_BINS, MAX_N_BINS = 120, 10, 5000

# Upper bound on the number of pair-image vectors materialised at once (memory ~ 50 B each).
_MAX_VECTORS_PER_CHUNK = 500_000

# The Gaussian kernel: pairs are counted out to KERNEL_REACH widths beyond r_max (the mass a kernel puts
# further away is < 3e-7), on counting bins no wider than a SUB_BINS_PER_WIDTH-th of its width (placing a pair
# at its counting bin's centre widens the kernel by < 0.3 %), at most MAX_SUB_BINS to an RDF bin.
KERNEL_REACH = 5.0
SUB_BINS_PER_WIDTH = 4
MAX_SUB_BINS = 64


@dataclass(frozen=True)
class RDF:
    """Radial distribution functions on a common grid.

    r_A: [n_bins] bin centres in Å.
    g: label -> [n_bins]; "total" plus partials "A-B" (element symbols, caller's order).
    """

    r_A: np.ndarray
    g: dict[str, np.ndarray]


# --------------------------------------------------------------------------- geometry helpers


def validated_cell(cell_A) -> np.ndarray:
    """``cell_A`` as a float [3, 3] array (rows are lattice vectors); ValueError unless finite with a volume."""
    cell = np.asarray(cell_A, dtype=float)
    if cell.shape != (3, 3):
        raise ValueError(f"cell_A must be [3, 3] (rows = lattice vectors), got {cell.shape}")
    if not np.all(np.isfinite(cell)) or abs(np.linalg.det(cell)) < 1e-10:
        raise ValueError("cell_A must be finite with non-zero volume")
    return cell


def validated_positions(positions_A) -> np.ndarray:
    """``positions_A`` as a float [n_frames, n_atoms, 3] array; ValueError if empty or not finite."""
    pos = np.asarray(positions_A, dtype=float)
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise ValueError(f"positions_A must be [n_frames, n_atoms, 3], got {pos.shape}")
    if pos.shape[0] == 0 or pos.shape[1] == 0:
        raise ValueError("positions_A has no frames or no atoms")
    n_bad = int(np.count_nonzero(~np.isfinite(pos)))
    if n_bad:
        raise ValueError(f"positions_A contains {n_bad} non-finite value(s)")
    return pos


def perpendicular_widths_A(cell_A) -> np.ndarray:
    """[3] distances between opposite faces of the cell, h_i = V / |a_j × a_k|.

    A fractional coordinate difference along axis i of a vector of length L is at most
    L / h_i, because it equals the dot product with the reciprocal vector b_i (|b_i| = 1/h_i).
    """
    cell = validated_cell(cell_A)
    return 1.0 / np.linalg.norm(np.linalg.inv(cell).T, axis=1)


def image_shifts(cell_A, cutoff_A: float) -> np.ndarray:
    """[n_images, 3] integer lattice translations needed to find every image within cutoff_A.

    Valid for fractional pair differences already wrapped into [-0.5, 0.5]: a vector with
    fractional components f_i + n_i and length <= cutoff has |f_i + n_i| <= cutoff / h_i, so
    |n_i| <= cutoff / h_i + 0.5. Correct for any (triclinic) cell; more images for skewed
    or small cells.
    """
    widths = perpendicular_widths_A(cell_A)
    n_max = np.floor(cutoff_A / widths + 0.5).astype(int)
    axes = [np.arange(-n, n + 1) for n in n_max]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3).astype(float)


def species_indices(numbers) -> tuple[np.ndarray, np.ndarray]:
    """Return (unique atomic numbers sorted, per-atom index into them)."""
    numbers = np.asarray(numbers)
    if numbers.ndim != 1:
        raise ValueError(f"numbers must be 1-D, got shape {numbers.shape}")
    unique, inverse = np.unique(numbers.astype(int), return_inverse=True)
    return unique, inverse


def _symbol_to_number(symbol: str) -> int:
    try:
        return CHEMICAL_SYMBOLS.index(symbol, 1)
    except ValueError:
        raise ValueError(f"unknown element symbol {symbol!r}") from None


# --------------------------------------------------------------------------- accumulate / normalise


def accumulate_pair_counts(
    positions_A, cell_A, species, n_species: int, r_max_A: float, n_bins: int, kernel_width_A: float = 0.0
) -> np.ndarray:
    """Histogram counts of one block of frames (the "single frame" step).

    positions_A: [n_frames, n_atoms, 3] Cartesian (wrapped or not); cell_A: [3, 3] rows are
    lattice vectors; species: [n_atoms] integer species index in [0, n_species).
    Returns counts[a, b, k]: number of ordered pairs (i of species a, j of species b, any
    periodic image of j, i != j or a non-zero image) with distance in bin k (binning
    ``ceil(d / dr)`` as in the module docstring), summed over the frames of the block; with
    ``kernel_width_A`` > 0, each pair's count spread over the bins by the Gaussian kernel (module
    docstring), in the same units, so :func:`normalise_pair_counts` applies unchanged.
    Results of several blocks can simply be added.
    """
    pos = validated_positions(positions_A)
    one_block = np.zeros(pos.shape[0], dtype=np.int64)
    return accumulate_block_pair_counts(pos, cell_A, species, n_species, r_max_A, n_bins, one_block, 1,
                                        kernel_width_A)[0]


def accumulate_block_pair_counts(
    positions_A, cell_A, species, n_species: int, r_max_A: float, n_bins: int, block_of_frame, n_blocks: int,
    kernel_width_A: float = 0.0,
) -> np.ndarray:
    """:func:`accumulate_pair_counts` of several blocks of frames in one pass over the frames.

    block_of_frame: [n_frames] the block (in [0, n_blocks)) each frame's pairs are counted in; blocks
    need not be contiguous, but the pass is fastest when they are. Returns counts [n_blocks, n_species,
    n_species, n_bins]; ``counts[b]`` is what :func:`accumulate_pair_counts` gives for the frames of
    block b, and the sum over blocks what it gives for all of them.
    """
    pos = validated_positions(positions_A)
    cell = validated_cell(cell_A)
    species = np.asarray(species, dtype=int)
    n_frames, n_atoms, _ = pos.shape
    if species.shape != (n_atoms,):
        raise ValueError(f"species must have shape ({n_atoms},), got {species.shape}")
    if r_max_A <= 0 or n_bins < 1:
        raise ValueError("r_max_A must be > 0 and n_bins >= 1")
    block_of_frame = np.asarray(block_of_frame)
    if block_of_frame.shape != (n_frames,) or not np.issubdtype(block_of_frame.dtype, np.integer):
        raise ValueError(f"block_of_frame must be {n_frames} integers, got {block_of_frame.dtype} {block_of_frame.shape}")
    if n_blocks < 1 or block_of_frame.min() < 0 or block_of_frame.max() >= n_blocks:
        raise ValueError(f"block_of_frame must lie in [0, n_blocks) with n_blocks >= 1 (n_blocks = {n_blocks})")
    reach_A, n_sub, n_fine = _counting_grid(r_max_A, n_bins, kernel_width_A)
    width_A = float(r_max_A / n_bins) / n_sub  # of a counting bin (exactly dr without a kernel)

    # Unordered pairs i <= j. i < j stands for the two ordered pairs (i, j) and (j, i): it is
    # counted once in hist[s_i, s_j] and the transpose below adds hist[s_j, s_i]. For i == j
    # (self images) both +n and -n appear, so weight 1/2 before the symmetrisation.
    i_idx, j_idx = np.triu_indices(n_atoms)
    pair_weight = np.where(i_idx == j_idx, 0.5, 1.0)
    pair_key = species[i_idx] * n_species + species[j_idx]

    shifts = image_shifts(cell, reach_A)  # [n_images, 3] fractional
    shifts_cart = shifts @ cell
    shift_norm2 = np.einsum("ix,ix->i", shifts_cart, shifts_cart)
    n_pairs, n_images = len(i_idx), len(shifts)
    frames_per_chunk = max(1, _MAX_VECTORS_PER_CHUNK // (n_pairs * n_images))

    frac = pos @ np.linalg.inv(cell)
    # flat bin index within a block: key * (n_fine + 2) + bin, bin in 0..n_fine+1 (0 and n_fine+1 = discarded)
    row = n_species * n_species * (n_fine + 2)
    hist = np.zeros((n_blocks, row))
    key_offset = pair_key * (n_fine + 2)  # [n_pairs]
    reach2 = reach_A * reach_A
    for start in range(0, n_frames, frames_per_chunk):
        f = frac[start : start + frames_per_chunk]
        blocks = block_of_frame[start : start + frames_per_chunk]  # [c]
        first = int(blocks.min())
        span = int(blocks.max()) - first + 1
        df = f[:, j_idx, :] - f[:, i_idx, :]  # [c, n_pairs, 3]
        df -= np.round(df)
        d0 = df @ cell  # [c, n_pairs, 3]
        # |d0 + s|^2 = |d0|^2 + 2 d0.s + |s|^2, without materialising the image vectors
        d2 = np.einsum("cpx,cpx->cp", d0, d0)[:, :, None] + shift_norm2
        d2 += 2.0 * (d0 @ shifts_cart.T)  # [c, n_pairs, n_images]
        np.maximum(d2, 0.0, out=d2)
        keep = d2 <= reach2 * (1.0 + 1e-12)
        dist = np.sqrt(d2[keep])
        bins = np.minimum(np.ceil(dist / width_A).astype(np.int64), n_fine + 1)
        offset = (blocks - first)[:, None] * row + key_offset  # [c, n_pairs]
        flat = np.broadcast_to(offset[:, :, None], d2.shape)[keep] + bins
        weights = np.broadcast_to(pair_weight[None, :, None], d2.shape)[keep]
        hist[first : first + span] += np.bincount(flat, weights=weights, minlength=span * row).reshape(span, row)

    hist = hist.reshape(n_blocks, n_species, n_species, n_fine + 2)
    counts = (hist + hist.transpose(0, 2, 1, 3))[..., 1 : n_fine + 1]
    if kernel_width_A == 0.0:  # the histogram itself
        return counts
    return counts @ _kernel_matrix(r_max_A, n_bins, kernel_width_A, n_sub, n_fine)


def _counting_grid(r_max_A: float, n_bins: int, kernel_width_A: float) -> tuple[float, int, int]:
    """(reach_A, n_sub, n_fine): pairs are counted out to reach_A on n_fine bins, n_sub to an RDF bin.

    Without a kernel: the RDF's own bins up to r_max. With one: bins no wider than
    width / SUB_BINS_PER_WIDTH (at most MAX_SUB_BINS to an RDF bin), out to r_max + KERNEL_REACH widths.
    """
    width = float(kernel_width_A)
    if not np.isfinite(width) or width < 0:
        raise ValueError(f"kernel_width_A must be finite and >= 0, got {kernel_width_A}")
    if width == 0.0:
        return float(r_max_A), 1, int(n_bins)
    dr = float(r_max_A / n_bins)
    n_sub = int(min(MAX_SUB_BINS, max(1, np.ceil(SUB_BINS_PER_WIDTH * dr / width))))
    reach_A = float(r_max_A) + KERNEL_REACH * width
    return reach_A, n_sub, int(np.ceil(reach_A / (dr / n_sub)))


def _kernel_matrix(r_max_A: float, n_bins: int, kernel_width_A: float, n_sub: int, n_fine: int) -> np.ndarray:
    """[n_fine, n_bins] what a count in each counting bin adds to each RDF bin's count (module docstring).

    A pair at the centre c of counting bin j, in RDF bin K(j) (bins past r_max continue the grid), adds
    to bin k the Gaussian's mass in bin k, with the mass below r = 0 reflected back, times
    V_shell(k) / V_shell(K(j)): in g, exactly what it adds to its own bin's g, spread.
    """
    dr = float(r_max_A / n_bins)
    step = dr / n_sub
    # With e_k = k n_sub step and c_j = (j + 1/2) step, (e_k - c_j) and (e_k + c_j) are (m - 1/2) step for
    # the integers m = k n_sub - j and k n_sub + j + 1: Phi is needed on that one grid only.
    m = np.arange(-n_fine - n_sub, n_bins * n_sub + n_fine + 2)
    phi = 0.5 * (1.0 + erf((m - 0.5) * step / (kernel_width_A * np.sqrt(2.0))))
    j = np.arange(n_fine)[:, None]
    k = np.arange(n_bins + 1)[None, :]  # edges e_0 .. e_n
    upper = phi[k * n_sub - j - m[0]] + phi[k * n_sub + j + 1 - m[0]]  # [n_fine, n_bins + 1], Phi(e-c) + Phi(e+c)
    mass = np.diff(upper, axis=1)  # [n_fine, n_bins]

    n_coarse = -(-n_fine // n_sub)
    edges = np.concatenate([np.linspace(0.0, r_max_A, n_bins + 1), r_max_A + dr * np.arange(1, n_coarse - n_bins + 1)])
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)  # [max(n_bins, n_coarse)]
    own = shell[np.arange(n_fine) // n_sub]  # [n_fine]
    return mass * shell[None, :n_bins] / own[:, None]


def normalise_pair_counts(
    counts, n_frames: int, n_per_species, volume_A3: float, r_max_A: float
) -> tuple[np.ndarray, np.ndarray]:
    """Turn accumulated ordered-pair counts into g(r) (the "conclude" step).

    counts: [n_species, n_species, n_bins] from (a sum of) :func:`accumulate_pair_counts`;
    n_frames: number of frames that went into it; n_per_species: [n_species] atom counts.
    Returns (r_A [n_bins] bin centres, g [n_species + 1, n_species + 1, n_bins]) where
    g[a, b] is the partial RDF with centres a and neighbours b, and g[-1, -1] is the total RDF
    (the other entries of the last row/column are unused and set to NaN).
    """
    counts = np.asarray(counts, dtype=float)
    n_species, _, n_bins = counts.shape
    n_per_species = np.asarray(n_per_species, dtype=float)
    if n_frames < 1:
        raise ValueError("n_frames must be >= 1")
    edges = np.linspace(0.0, r_max_A, n_bins + 1)
    shell_vol = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    r = 0.5 * (edges[:-1] + edges[1:])

    g = np.full((n_species + 1, n_species + 1, n_bins), np.nan)
    pair_norm = n_per_species[:, None] * n_per_species[None, :] / volume_A3  # N_a * rho_b
    g[:n_species, :n_species] = counts / n_frames / (pair_norm[:, :, None] * shell_vol)
    n_total = n_per_species.sum()
    g[-1, -1] = counts.sum(axis=(0, 1)) / n_frames / (n_total * n_total / volume_A3 * shell_vol)
    return r, g


# --------------------------------------------------------------------------- public API


def rdf(
    positions_A,
    cell_A,
    numbers,
    r_max_A: float,
    n_bins: int,
    pairs: Sequence[tuple[str, str]] = (),
    frame_stride: int = 1,
    kernel_width_A: float = 0.0,
) -> RDF:
    """Frame-averaged total and partial RDFs of a fixed-cell periodic trajectory.

    positions_A [n_frames, n_atoms, 3] (wrapped or not), cell_A [3, 3] (rows are lattice
    vectors), numbers [n_atoms] atomic numbers. Frames ``0, frame_stride, 2·frame_stride, …``
    are used. Returns "total" plus one partial per requested (A, B) pair, labelled "A-B".
    Normalisation as ``ase.geometry.rdf.get_rdf`` (see module docstring); all periodic images
    within ``r_max_A`` are included, so r_max may exceed half the cell's width. ``kernel_width_A``
    > 0 smooths the histogram with the Gaussian kernel of the module docstring.
    """
    return block_rdfs(positions_A, cell_A, numbers, r_max_A, n_bins, 1, pairs, frame_stride, kernel_width_A)[0]


def block_rdfs(
    positions_A,
    cell_A,
    numbers,
    r_max_A: float,
    n_bins: int,
    n_blocks: int,
    pairs: Sequence[tuple[str, str]] = (),
    frame_stride: int = 1,
    kernel_width_A: float = 0.0,
) -> list[RDF]:
    """:func:`rdf` of each of ``n_blocks`` consecutive blocks of the used frames (as equal in size as they can
    be; at least one frame each), in one pass over the frames. Their frame-weighted mean is :func:`rdf`."""
    pos = validated_positions(positions_A)
    cell = validated_cell(cell_A)
    if frame_stride < 1:
        raise ValueError("frame_stride must be >= 1")
    numbers = np.asarray(numbers)
    if numbers.shape != (pos.shape[1],):
        raise ValueError(f"numbers must have shape ({pos.shape[1]},), got {numbers.shape}")
    unique, species = species_indices(numbers)

    pair_indices = []
    for a, b in pairs:
        idx = []
        for symbol in (a, b):
            z = _symbol_to_number(symbol)
            if z not in unique:
                raise ValueError(f"element {symbol} of pair {a}-{b} is not in the structure")
            idx.append(int(np.searchsorted(unique, z)))
        pair_indices.append((f"{a}-{b}", idx[0], idx[1]))

    frames = pos[::frame_stride]
    if not 1 <= n_blocks <= len(frames):
        raise ValueError(f"n_blocks must lie in [1, {len(frames)}] (the frames used), got {n_blocks}")
    block_of_frame = np.arange(len(frames)) * n_blocks // len(frames)  # [n_used] consecutive, sizes differ by <= 1
    counts = accumulate_block_pair_counts(frames, cell, species, len(unique), r_max_A, n_bins, block_of_frame,
                                          n_blocks, kernel_width_A)
    n_per_species = np.bincount(species, minlength=len(unique))
    volume = abs(float(np.linalg.det(cell)))
    out = []
    for block_counts, n_frames in zip(counts, np.bincount(block_of_frame, minlength=n_blocks), strict=True):
        r, g = normalise_pair_counts(block_counts, int(n_frames), n_per_species, volume, r_max_A)
        curves = {"total": g[-1, -1].copy()}
        for label, ia, ib in pair_indices:
            curves[label] = g[ia, ib].copy()
        out.append(RDF(r_A=r, g=curves))
    return out


def mean_rdf(curves: Sequence[RDF], weights: Sequence[float] | None = None) -> RDF:
    """The mean of RDFs on the same bins, label by label (the labels of the first), weighted by ``weights`` when
    given: with weights proportional to their frames, the RDF of their frames together."""
    w = np.full(len(curves), 1.0 / len(curves)) if weights is None else np.asarray(weights, float) / np.sum(weights)
    return RDF(r_A=curves[0].r_A, g={label: np.tensordot(w, [c.g[label] for c in curves], axes=1)
                                     for label in curves[0].g})


def rdf_mae(g: RDF, reference: RDF) -> float:
    """The project's RDF-MAE between an RDF and a reference RDF.

    Definition: for every label L present in ``g`` ("total" and any partials),
    MAE_L = mean over bins k of |g_L(r_k) − g_ref,L(r_k)|; the RDF-MAE is the mean of MAE_L
    over those labels (each label weighted equally; all share the same bins, so this is also
    the mean over all (label, bin) values). Labels only in ``reference`` are ignored.
    The paper counts an MD run as stable when this is < 0.02 (``stability.RDF_MAE_STABLE``).

    Raises ValueError if the r grids differ (length or values beyond 1e-9 Å), if a label of
    ``g`` is missing from ``reference``, if ``g`` has no labels, or on non-finite values.
    """
    r = np.asarray(g.r_A, dtype=float)
    r_ref = np.asarray(reference.r_A, dtype=float)
    if r.shape != r_ref.shape or not np.allclose(r, r_ref, rtol=0.0, atol=1e-9):
        raise ValueError("RDF grids differ: compute both with the same r_max_A and n_bins")
    if not g.g:
        raise ValueError("RDF has no labels")
    missing = sorted(set(g.g) - set(reference.g))
    if missing:
        raise ValueError(f"labels missing from the reference RDF: {missing}")
    per_label = []
    for label, values in g.g.items():
        values = np.asarray(values, dtype=float)
        ref = np.asarray(reference.g[label], dtype=float)
        if values.shape != r.shape or ref.shape != r.shape:
            raise ValueError(f"label {label!r}: g has shape {values.shape}, grid {r.shape}")
        n_bad = int(np.count_nonzero(~np.isfinite(values)) + np.count_nonzero(~np.isfinite(ref)))
        if n_bad:
            raise ValueError(f"label {label!r}: {n_bad} non-finite value(s)")
        per_label.append(np.mean(np.abs(values - ref)))
    return float(np.mean(per_label))
