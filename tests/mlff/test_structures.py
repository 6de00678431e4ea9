"""Built-in structures and structure-file loading."""

from __future__ import annotations

import itertools

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from pymatgen.core import Composition
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from mlff.structures import BUILTIN_SOURCES, BUILTIN_STRUCTURES, LGPS_ORDERING, LI2S_LATTICE_A, load_structure

OXIDATION_STATES = {"Li": 1, "Ge": 4, "P": 5, "S": -2}
MIN_LI_LI_A = 1.6  # closer Li pairs would be unphysical in a starting structure
MIN_ANY_PAIR_A = 1.8  # shortest bonds expected: P-S ~2.05 A, Ge-S ~2.2 A
MAX_TETRAHEDRAL_BOND_A = 2.5  # P-S and Ge-S bonds of the PS4 / GeS4 tetrahedra are shorter


def min_distances_by_pair(atoms) -> dict[tuple[str, str], float]:
    distances = atoms.get_all_distances(mic=True)
    np.fill_diagonal(distances, np.inf)
    symbols = np.array(atoms.get_chemical_symbols())
    result = {}
    for a, b in itertools.combinations_with_replacement(sorted(set(symbols)), 2):
        result[(a, b)] = distances[np.ix_(symbols == a, symbols == b)].min()
    return result


def test_builtin_names():
    assert set(BUILTIN_STRUCTURES) == set(BUILTIN_SOURCES) == {"LGPS", "Li2S", "Li3PS4", "Li4GeS4"}


def test_lgps_is_an_ordered_charge_balanced_50_atom_cell():
    atoms = load_structure("LGPS")
    assert len(atoms) == 50
    assert Composition(atoms.get_chemical_formula()) == Composition("Li20Ge2P4S24")
    assert atoms.pbc.all()
    structure = AseAtomsAdaptor.get_structure(atoms)
    assert structure.is_ordered
    charge = sum(OXIDATION_STATES[symbol] for symbol in atoms.get_chemical_symbols())
    assert charge == 0
    # Independently, pymatgen's most likely charge-balanced oxidation states are the ones assumed.
    best_guess = Composition(atoms.get_chemical_formula()).reduced_composition.oxi_state_guesses()[0]
    assert best_guess == pytest.approx(OXIDATION_STATES)


def test_lgps_ge_and_p_are_tetrahedrally_coordinated_by_sulfur():
    atoms = load_structure("LGPS")
    distances = atoms.get_all_distances(mic=True)
    sulfur = atoms.numbers == 16
    for index in np.flatnonzero((atoms.numbers == 15) | (atoms.numbers == 32)):
        to_sulfur = np.sort(distances[index, sulfur])
        assert (to_sulfur[:4] < MAX_TETRAHEDRAL_BOND_A).all()
        assert to_sulfur[4] > MAX_TETRAHEDRAL_BOND_A


def test_lgps_keeps_the_source_lattice_and_has_sane_distances():
    from importlib import resources

    from pymatgen.core import Structure

    source = resources.files(LGPS_ORDERING["source_package"]) / LGPS_ORDERING["source_file"]
    with resources.as_file(source) as path:
        disordered = Structure.from_file(path)
    atoms = load_structure("LGPS")
    np.testing.assert_allclose(atoms.cell.array, disordered.lattice.matrix, atol=1e-10)
    pairs = min_distances_by_pair(atoms)
    assert pairs[("Li", "Li")] > MIN_LI_LI_A
    assert min(pairs.values()) > MIN_ANY_PAIR_A
    # Every atom sits on a site of the disordered source structure.
    for position in atoms.get_scaled_positions():
        offsets = disordered.frac_coords - position
        offsets -= np.round(offsets)
        assert np.abs(offsets @ disordered.lattice.matrix).sum(axis=1).min() < 1e-6


def test_lgps_ordering_has_the_recorded_ewald_energy_below_random_orderings():
    from importlib import resources

    from pymatgen.analysis.ewald import EwaldSummation
    from pymatgen.core import Structure

    def ewald_energy_eV(structure: Structure) -> float:
        structure = structure.copy()
        structure.add_oxidation_state_by_element(OXIDATION_STATES)
        return EwaldSummation(structure).total_energy

    chosen_eV = ewald_energy_eV(AseAtomsAdaptor.get_structure(load_structure("LGPS")))
    assert chosen_eV == pytest.approx(LGPS_ORDERING["ewald_energy_eV"], abs=1e-4)

    source = resources.files(LGPS_ORDERING["source_package"]) / LGPS_ORDERING["source_file"]
    with resources.as_file(source) as path:
        disordered = Structure.from_file(path)
    partial_li = [i for i, site in enumerate(disordered) if not site.is_ordered and len(site.species) == 1]
    mixed = [i for i, site in enumerate(disordered) if len(site.species) == 2]
    rng = np.random.default_rng(0)
    for _ in range(10):
        ordering = disordered.copy()
        for index in mixed:
            ordering.replace(index, "P")
        for index in rng.choice(mixed, size=2, replace=False):
            ordering.replace(index, "Ge")
        kept_li = set(rng.choice(partial_li, size=16, replace=False))
        for index in partial_li:
            ordering.replace(index, "Li")
        ordering.remove_sites([i for i in partial_li if i not in kept_li])
        assert ordering.composition == Composition("Li20Ge2P4S24")
        assert ewald_energy_eV(ordering) > chosen_eV


def test_lgps_is_deterministic_and_returns_independent_copies():
    first = load_structure("LGPS")
    BUILTIN_STRUCTURES["LGPS"].cache_clear()  # recompute the ordering from scratch
    second = load_structure("LGPS")
    assert np.array_equal(first.numbers, second.numbers)
    assert np.array_equal(first.positions, second.positions)
    first.positions[0] += 1.0
    assert not np.array_equal(first.positions, load_structure("LGPS").positions)


def test_li2s_is_the_antifluorite_cell():
    atoms = load_structure("Li2S")
    assert len(atoms) == 12
    assert Composition(atoms.get_chemical_formula()) == Composition("Li8S4")
    np.testing.assert_allclose(atoms.cell.array, np.eye(3) * LI2S_LATTICE_A)
    analyzer = SpacegroupAnalyzer(AseAtomsAdaptor.get_structure(atoms))
    assert analyzer.get_space_group_symbol() == "Fm-3m"
    pairs = min_distances_by_pair(atoms)
    assert pairs[("Li", "S")] == pytest.approx(LI2S_LATTICE_A * np.sqrt(3) / 4)
    assert pairs[("Li", "Li")] == pytest.approx(LI2S_LATTICE_A / 2)
    assert pairs[("S", "S")] == pytest.approx(LI2S_LATTICE_A / np.sqrt(2))
    # Every Li has four S neighbours at the Li-S bond length (tetrahedral sites).
    distances = atoms.get_all_distances(mic=True)
    li = atoms.numbers == 3
    n_neighbours = (np.abs(distances[np.ix_(li, ~li)] - LI2S_LATTICE_A * np.sqrt(3) / 4) < 1e-6).sum(axis=1)
    assert (n_neighbours == 4).all()


@pytest.mark.parametrize("filename, ase_format", [("cell.cif", "cif"), ("POSCAR", "vasp"), ("cell.extxyz", "extxyz")])
def test_structure_file_round_trip(tmp_path, filename, ase_format):
    original = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    original.rattle(0.05, seed=3)
    ase.io.write(tmp_path / filename, original, format=ase_format)
    loaded = load_structure(filename, base_dir=tmp_path)
    assert sorted(loaded.numbers) == sorted(original.numbers)
    np.testing.assert_allclose(loaded.cell.array, original.cell.array, atol=1e-4)
    order_loaded = np.lexsort(np.round(loaded.get_scaled_positions(), 4).T)
    order_original = np.lexsort(np.round(original.get_scaled_positions(), 4).T)
    np.testing.assert_allclose(
        loaded.get_scaled_positions()[order_loaded], original.get_scaled_positions()[order_original], atol=1e-4
    )
    np.testing.assert_array_equal(loaded.numbers[order_loaded], original.numbers[order_original])


def test_absolute_path_ignores_base_dir(tmp_path):
    ase.io.write(tmp_path / "cell.extxyz", bulk("Cu", cubic=True), format="extxyz")
    loaded = load_structure(str(tmp_path / "cell.extxyz"), base_dir=tmp_path / "elsewhere")
    assert len(loaded) == 4


def test_missing_file_error_names_it(tmp_path):
    with pytest.raises(ValueError, match="nothere.cif"):
        load_structure("nothere.cif", base_dir=tmp_path)


def test_unreadable_file_error_names_it_and_the_formats(tmp_path):
    (tmp_path / "garbage.cif").write_text("this is not a crystal\n")
    (tmp_path / "garbage.dat").write_bytes(b"\x00\x01 nonsense")
    for name in ("garbage.cif", "garbage.dat"):
        with pytest.raises(ValueError, match=name) as info:
            load_structure(name, base_dir=tmp_path)
        assert "CIF" in str(info.value) and "POSCAR" in str(info.value)


def test_non_periodic_file_is_rejected(tmp_path):
    from ase.build import molecule

    ase.io.write(tmp_path / "water.xyz", molecule("H2O"), format="extxyz")
    with pytest.raises(ValueError, match="water.xyz"):
        load_structure("water.xyz", base_dir=tmp_path)


@pytest.mark.parametrize("name, formula, density_g_cm3, bonded, bond_range_A", [
    ("Li3PS4", "Li12P4S16", 1.8543, "P", (2.027, 2.076)),
    ("Li4GeS4", "Ge4Li16S16", 2.2752, "Ge", (2.209, 2.245)),
])
def test_the_papers_transfer_materials_are_the_materials_projects(name, formula, density_g_cm3, bonded, bond_range_A):
    """mp-985583 and mp-30249: composition, Pnma (spglib at symprec 0.01), density, and the tetrahedra's bonds."""
    atoms = load_structure(name)
    assert atoms.get_chemical_formula() == formula
    structure = AseAtomsAdaptor.get_structure(atoms)
    assert SpacegroupAnalyzer(structure, symprec=0.01).get_space_group_number() == 62
    assert structure.density == pytest.approx(density_g_cm3, abs=1e-4)
    centres = [i for i, site in enumerate(structure) if site.specie.symbol == bonded]
    sulfur = [i for i, site in enumerate(structure) if site.specie.symbol == "S"]
    bonds_A = np.sort(structure.distance_matrix[np.ix_(centres, sulfur)], axis=1)[:, :4]  # each centre's 4 S
    assert bonds_A.min() == pytest.approx(bond_range_A[0], abs=1e-3)
    assert bonds_A.max() == pytest.approx(bond_range_A[1], abs=1e-3)
    assert np.sort(structure.distance_matrix[np.ix_(centres, sulfur)], axis=1)[:, 4].min() > 3.0  # tetrahedra only
    assert BUILTIN_SOURCES[name]["source"].startswith("Materials Project mp-")


def test_campaign_structure_writes_a_built_in_for_a_viewer(tmp_path):
    from click.testing import CliRunner

    from campaign.cli import main

    for fmt, ase_format in (("cif", "cif"), ("poscar", "vasp"), ("extxyz", "extxyz")):
        result = CliRunner().invoke(main, ["structure", "Li3PS4", "--format", fmt])
        assert result.exit_code == 0, result.output
        (tmp_path / f"s.{fmt}").write_text(result.output)
        read = ase.io.read(tmp_path / f"s.{fmt}", format=ase_format)
        assert read.get_chemical_formula() == "Li12P4S16"
        np.testing.assert_allclose(read.cell.lengths(), load_structure("Li3PS4").cell.lengths(), atol=1e-6)
    unknown = CliRunner().invoke(main, ["structure", "Li7La3Zr2O12"])
    assert unknown.exit_code == 2 and "no built-in" in unknown.output
