"""Pretrained MLIPs (mlff/pretrained.py): the ASE contract the zoo passes, offline loading, weight files.

CHGNet and SevenNet-0 compute in float32, so invariances hold to float32 rounding of energies of
about 50 eV (a few 1e-5 eV), not to the 1e-10 of the zoo's float64 checks.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from ase.calculators.emt import EMT
from scipy.spatial.transform import Rotation

from mlff.pretrained import PRETRAINED, Pretrained, resolve_weight_paths, results_label
from mlff.structures import load_structure

ENERGY_TOLERANCE_EV = 2e-4  # float32 rounding of a 12-atom cell's energy, summed over atoms
FORCE_TOLERANCE_EV_A = 2e-4


@pytest.fixture(scope="module", params=sorted(PRETRAINED))
def calculator(request):
    """Each built-in on CPU with one torch thread, loaded with every network connection refused."""
    def refuse(*args, **kwargs):
        raise OSError("network access attempted while loading a pretrained model")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        loaded = Pretrained(request.param).calculator("cpu")
    yield loaded
    torch.set_num_threads(threads)


def rattled_li2s(seed: int = 3):
    atoms = load_structure("Li2S")
    atoms.rattle(0.1, seed=seed)
    return atoms


def evaluate(calculator, atoms) -> tuple[float, np.ndarray]:
    atoms = atoms.copy()
    atoms.calc = calculator
    return atoms.get_potential_energy(), atoms.get_forces()


def test_forces_are_not_trivial_and_the_cell_is_bound(calculator):
    atoms = rattled_li2s()
    energy, forces = evaluate(calculator, atoms)
    assert -6.0 < energy / len(atoms) < -2.0  # Li2S: a few eV per atom below free atoms
    assert 0.1 < np.abs(forces).max() < 10.0


def test_translation_invariance(calculator):
    atoms = rattled_li2s()
    energy, forces = evaluate(calculator, atoms)
    atoms.positions += np.array([0.7, -1.3, 2.9])
    moved_energy, moved_forces = evaluate(calculator, atoms)
    assert moved_energy == pytest.approx(energy, abs=ENERGY_TOLERANCE_EV)
    np.testing.assert_allclose(moved_forces, forces, atol=FORCE_TOLERANCE_EV_A)


def test_rotation_invariance_and_force_equivariance(calculator):
    atoms = rattled_li2s()
    energy, forces = evaluate(calculator, atoms)
    rotation = Rotation.random(random_state=5).as_matrix()
    atoms.set_cell(atoms.cell.array @ rotation.T)
    atoms.positions = atoms.positions @ rotation.T
    rotated_energy, rotated_forces = evaluate(calculator, atoms)
    assert rotated_energy == pytest.approx(energy, abs=ENERGY_TOLERANCE_EV)
    np.testing.assert_allclose(rotated_forces, forces @ rotation.T, atol=FORCE_TOLERANCE_EV_A)


def test_permutation_invariance(calculator):
    atoms = rattled_li2s()
    energy, forces = evaluate(calculator, atoms)
    order = np.random.default_rng(0).permutation(len(atoms))
    permuted_energy, permuted_forces = evaluate(calculator, atoms[order])
    assert permuted_energy == pytest.approx(energy, abs=ENERGY_TOLERANCE_EV)
    np.testing.assert_allclose(permuted_forces, forces[order], atol=FORCE_TOLERANCE_EV_A)


def test_supercell_extensivity(calculator):
    atoms = rattled_li2s()
    energy, forces = evaluate(calculator, atoms)
    doubled_energy, doubled_forces = evaluate(calculator, atoms.repeat((2, 1, 1)))
    assert doubled_energy == pytest.approx(2 * energy, abs=2 * ENERGY_TOLERANCE_EV)
    np.testing.assert_allclose(doubled_forces, np.tile(forces, (2, 1)), atol=FORCE_TOLERANCE_EV_A)


def test_forces_are_minus_the_energy_gradient(calculator):
    """Central differences with a 0.01 Å step: float32 energies give the gradient to about 1e-3 eV/Å."""
    atoms = rattled_li2s()
    _, forces = evaluate(calculator, atoms)
    step_A = 1e-2
    for atom, axis in [(0, 0), (5, 2), (9, 1)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[atom, axis] += step_A
        minus.positions[atom, axis] -= step_A
        gradient = (evaluate(calculator, plus)[0] - evaluate(calculator, minus)[0]) / (2 * step_A)
        assert -gradient == pytest.approx(forces[atom, axis], abs=5e-3)


def test_builtins_name_weights_inside_their_wheels():
    for name, distribution in PRETRAINED.items():
        model = Pretrained(name)
        model.check()
        (weights,) = model.weights()
        assert weights.is_file() and f"/{distribution}/" in str(weights)
        assert model.version() not in ("", "unknown")
    with pytest.raises(ValueError, match="takes no options"):
        Pretrained("chgnet", {"model_path": "x.pt"}).check()


def test_calculator_class_entries_check_their_weight_files(tmp_path):
    resolved = resolve_weight_paths({"model_paths": ["a.model", "/abs/b.model"], "device": "cpu"}, tmp_path)
    assert resolved == {"model_paths": [str(tmp_path / "a.model"), "/abs/b.model"], "device": "cpu"}
    missing = Pretrained("ase.calculators.emt:EMT", {"model_file": str(tmp_path / "emt.model")})
    with pytest.raises(ValueError, match=r"emt\.model not found; nothing is downloaded"):
        missing.check()
    (tmp_path / "emt.model").write_text("weights")
    missing.check()
    assert isinstance(Pretrained("ase.calculators.emt:EMT").calculator("cpu"), EMT)
    assert Pretrained("ase.calculators.emt:EMT").version() != "unknown"
    for bad, message in [("dft", "unknown pretrained model or calculator"),
                         ("ase.calculators.emt:NoSuchCalculator", "cannot import"),
                         ("no_such_module:Thing", "cannot import"), ("numpy:ndarray", "not an ASE calculator")]:
        with pytest.raises(ValueError, match=message):
            Pretrained(bad).check()


def test_results_name_the_entry_and_its_mode():
    assert results_label("chgnet", "zero_shot") == "chgnet zero-shot"
    assert results_label("chgnet", "fine_tune") == "chgnet fine-tuned"


@pytest.mark.slow
def test_chgnet_energy_and_forces_match_chgnet_own_calculator():
    from chgnet.model.dynamics import CHGNetCalculator

    calculator = Pretrained("chgnet").calculator("cpu")
    atoms = rattled_li2s(seed=2)
    energy, forces = evaluate(calculator, atoms)
    own_energy, own_forces = evaluate(CHGNetCalculator(model=calculator.model, use_device="cpu"), atoms)
    assert energy == pytest.approx(own_energy, abs=1e-5)
    np.testing.assert_allclose(forces, own_forces, atol=1e-5)
