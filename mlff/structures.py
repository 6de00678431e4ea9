"""Starting structures for reference MD and MLFF-MD: built-in cells and structure files.

Built-in structures (``BUILTIN_STRUCTURES``):

``"LGPS"``
    Ordered 50-atom Li20Ge2P4S24 (Li10GeP2S12, P4_2/nmc parent) cell. Source: the disordered
    structure shipped inside pymatgen, ``pymatgen/util/structures/Li10GeP2S12.json``
    (58 sites, 8.694 x 8.694 x 12.599 Angstrom). Its occupancies sum to Li20.2 Ge2.06 P3.94 S24 per
    cell, so no supercell is needed: the partial occupancies are replaced by fractions that give
    integer counts in this cell, and the cell is ordered by Ewald-energy ranking:

    1. oxidation states Li+1, Ge+4, P+5, S-2 (charge balanced: 20 + 8 + 20 = 48 = 24 x 2);
    2. the 16 Li sites at occupancy 0.691 and the 8 Li sites at 0.643 form one pool of 24 sites
       holding 16 Li (occupancy 2/3 each). Keeping them apart (11 of 16 and 5 of 8) would
       force at least three pairs of Li 1.73 Angstrom apart, because the 16 sites come in 8
       such close pairs; pooled, the Ewald ranking puts one Li per pair (min Li-Li 2.32 A);
    3. the 4 mixed Ge/P sites (Ge 0.515, P 0.485) hold 2 Ge and 2 P (1/2 each);
    4. ``OrderDisorderedStructureTransformation(algo=ALGO_FAST)`` ranks the orderings by Ewald
       energy; the first of the ranked list (lowest energy) is taken. The lowest energy is shared
       by symmetry-equivalent orderings, which the deterministic ranking returns in a fixed
       order. The energy is checked against ``LGPS_ORDERING["ewald_energy_eV"]``, so a pymatgen
       change that picks a different ordering fails loudly instead of silently.

    Computing it takes about 2 s; the result is kept in memory for the process.

``"Li2S"``
    Antifluorite Li2S (Fm-3m), conventional cubic cell with a = 5.71 Angstrom: S on the fcc
    sites, Li on the 8 tetrahedral sites (1/4, 1/4, 1/4) + fcc translations; 12 atoms.

``"Li3PS4"``
    beta-Li3PS4 as the Materials Project holds it, mp-985583 (the paper's transfer material):
    Pnma (62), Z = 4, 32 atoms, a = 13.03281824, b = 8.01859859, c = 6.17176593 Angstrom in the
    standard setting (the MP file stores a and c swapped). Li 8d (0.33254575, 0.03349734,
    0.38940176), Li 4b (0, 0, 1/2), P 4c (0.08946782, 1/4, 0.15238914), S 4c (0.10018968, 1/4,
    0.82467616), S 4c (0.94066789, 1/4, 0.27242266), S 8d (0.15386116, 0.03652390, 0.27096483).
    Density 1.8543 g/cm3; P-S bonds 2.027-2.076 Angstrom.

``"Li4GeS4"``
    Li4GeS4 as the Materials Project holds it, mp-30249 (the paper's other transfer material):
    Pnma (62), Z = 4, 36 atoms, a = 14.03167934, b = 7.73756620, c = 6.14851844 Angstrom. Li 4c
    (0.41299128, 1/4, 0.62785429), Li 8d (0.17771681, 0.99941018, 0.69105147), Li 4b (0, 0, 1/2),
    Ge 4c (0.08883735, 1/4, 0.14925154), S 4c (0.93763540, 1/4, 0.26864686), S 8d (0.15611064,
    0.01389942, 0.28239364), S 4c (0.08608731, 1/4, 0.79003669). Density 2.2752 g/cm3; Ge-S
    bonds 2.209-2.245 Angstrom.

Each built-in's source is also data (``BUILTIN_SOURCES``), which the reference stage records.
"""

from __future__ import annotations

import functools
import importlib.resources
import itertools
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

LGPS_ORDERING = {
    "source_package": "pymatgen.util",
    "source_file": "structures/Li10GeP2S12.json",
    "oxidation_states": {"Li": 1, "Ge": 4, "P": 5, "S": -2},
    "occupancies": {
        "Li sites at 0.691 (16) and 0.643 (8), pooled": "Li 2/3 (16 Li on 24 sites)",
        "Ge/P sites (4)": "Ge 1/2, P 1/2",
    },
    "transformation": "pymatgen OrderDisorderedStructureTransformation",
    "parameters": {"algo": "ALGO_FAST", "return_ranked_list": 1},
    "chosen": "rank 0 of the Ewald ranking (lowest Ewald energy)",
    "ewald_energy_eV": -1189.4615637,
}
EWALD_ENERGY_TOLERANCE_EV = 1e-4

LI2S_LATTICE_A = 5.71
FCC_FRACTIONAL = np.array([[0.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])  # [4, 3]

READABLE_FORMATS = "CIF (*.cif, via pymatgen), POSCAR/CONTCAR or *.vasp, extended XYZ (*.xyz, *.extxyz), ASE *.traj"


@functools.cache
def _ordered_lgps() -> Atoms:
    from pymatgen.core import Structure
    from pymatgen.transformations.standard_transformations import OrderDisorderedStructureTransformation

    source = importlib.resources.files(LGPS_ORDERING["source_package"]) / LGPS_ORDERING["source_file"]
    with importlib.resources.as_file(source) as path:
        disordered = Structure.from_file(path)
    for index, site in enumerate(disordered):
        symbols = sorted(el.symbol for el in site.species)
        if symbols == ["Li"] and not site.is_ordered:
            disordered.replace(index, {"Li": 2 / 3}, site.frac_coords)
        elif symbols == ["Ge", "P"]:
            disordered.replace(index, {"Ge": 0.5, "P": 0.5}, site.frac_coords)
    disordered.add_oxidation_state_by_element(LGPS_ORDERING["oxidation_states"])
    transformation = OrderDisorderedStructureTransformation(algo=OrderDisorderedStructureTransformation.ALGO_FAST)
    ranked = transformation.apply_transformation(disordered, return_ranked_list=1)
    best = ranked[0]
    if abs(best["energy"] - LGPS_ORDERING["ewald_energy_eV"]) > EWALD_ENERGY_TOLERANCE_EV:
        raise RuntimeError(
            f"LGPS ordering changed: Ewald energy {best['energy']:.7f} eV, expected "
            f"{LGPS_ORDERING['ewald_energy_eV']} eV (pymatgen version differs from the one recorded)"
        )
    ordered = best["structure"]
    return Atoms(
        numbers=[site.specie.Z for site in ordered],
        cell=ordered.lattice.matrix,
        scaled_positions=ordered.frac_coords,
        pbc=True,
    )


def _li2s() -> Atoms:
    tetrahedral = np.array(list(itertools.product([0.25, 0.75], repeat=3)))  # [8, 3]
    return Atoms(
        symbols=["S"] * 4 + ["Li"] * 8,
        cell=np.eye(3) * LI2S_LATTICE_A,
        scaled_positions=np.concatenate([FCC_FRACTIONAL, tetrahedral]),
        pbc=True,
    )


# The Materials Project's Pnma thiophosphate and thiogermanate: lattice (a, b, c) in Å and the
# asymmetric unit's (element, fractional x, y, z) in the standard setting of space group 62.
PNMA_STRUCTURES = {
    "Li3PS4": ("mp-985583", (13.03281824, 8.01859859, 6.17176593), (
        ("Li", 0.33254575, 0.03349734, 0.38940176), ("Li", 0.0, 0.0, 0.5), ("P", 0.08946782, 0.25, 0.15238914),
        ("S", 0.10018968, 0.25, 0.82467616), ("S", 0.94066789, 0.25, 0.27242266),
        ("S", 0.15386116, 0.03652390, 0.27096483),
    )),
    "Li4GeS4": ("mp-30249", (14.03167934, 7.73756620, 6.14851844), (
        ("Li", 0.41299128, 0.25, 0.62785429), ("Li", 0.17771681, 0.99941018, 0.69105147), ("Li", 0.0, 0.0, 0.5),
        ("Ge", 0.08883735, 0.25, 0.14925154), ("S", 0.93763540, 0.25, 0.26864686),
        ("S", 0.15611064, 0.01389942, 0.28239364), ("S", 0.08608731, 0.25, 0.79003669),
    )),
}


def _pnma(name: str) -> Atoms:
    from pymatgen.core import Lattice, Structure

    _, (a, b, c), sites = PNMA_STRUCTURES[name]
    structure = Structure.from_spacegroup(
        "Pnma", Lattice.orthorhombic(a, b, c), [site[0] for site in sites], [site[1:] for site in sites]
    )
    return Atoms(numbers=[site.specie.Z for site in structure], cell=np.diag([a, b, c]),
                 scaled_positions=structure.frac_coords, pbc=True)


BUILTIN_STRUCTURES = {
    "LGPS": _ordered_lgps, "Li2S": _li2s,
    **{name: functools.cache(functools.partial(_pnma, name)) for name in PNMA_STRUCTURES},
}
BUILTIN_SOURCES = {  # where each built-in comes from, as recorded with the reference trajectories made from it
    "LGPS": {"source": "pymatgen/util/structures/Li10GeP2S12.json, ordered", **LGPS_ORDERING},
    "Li2S": {"source": "antifluorite Li2S, Fm-3m, a = 5.71 Å, conventional cell"},
    **{name: {"source": f"Materials Project {mp_id}, Pnma (62), standard setting", "lattice_A": list(lattice),
              "sites": [list(site) for site in sites]}
       for name, (mp_id, lattice, sites) in PNMA_STRUCTURES.items()},
}


def _read_file(path: Path) -> Atoms:
    """The structure in ``path``; raises whatever the reader raises on a bad file."""
    if path.suffix.lower() == ".cif":
        from pymatgen.core import Structure
        from pymatgen.io.ase import AseAtomsAdaptor

        structure = Structure.from_file(path)
        if not structure.is_ordered:
            raise ValueError("structure has partially occupied sites; give an ordered structure")
        return AseAtomsAdaptor.get_atoms(structure)
    return ase.io.read(path, index=-1)


def load_structure(source: str, base_dir: Path | None = None) -> Atoms:
    """A built-in structure by name (see ``BUILTIN_STRUCTURES``) or the structure in a file.

    A relative path is taken relative to ``base_dir`` (when given). Files hold one fully
    periodic, ordered structure; for multi-frame files the last frame is used.
    """
    if source in BUILTIN_STRUCTURES:
        return BUILTIN_STRUCTURES[source]().copy()
    path = Path(source)
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    if not path.is_file():
        raise ValueError(
            f"structure {source!r}: no built-in of that name ({', '.join(BUILTIN_STRUCTURES)}) and no file {path}"
        )
    try:
        atoms = _read_file(path)
    except Exception as err:
        raise ValueError(f"{path}: cannot read a structure ({err}); expected one of {READABLE_FORMATS}") from err
    if not atoms.pbc.all() or atoms.cell.rank < 3:
        raise ValueError(f"{path}: structure is not periodic in three dimensions (a full cell is required)")
    return Atoms(numbers=atoms.numbers, cell=atoms.cell.array, positions=atoms.positions, pbc=True)
