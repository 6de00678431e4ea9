"""Checkpoints and the ASE calculator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from mlff import load_calculator
from mlff.calculator import MLFFCalculator
from mlff.checkpoint import CheckpointError, load_model, save_model_checkpoint
from mlff.models import MODELS, build_model, energy_and_forces
from model_sizes import SMALL_HPARAMS


@pytest.fixture(params=sorted(MODELS))
def name(request):
    return request.param


def rattled_copper(seed: int = 0):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.positions += np.random.default_rng(seed).normal(0.0, 0.1, atoms.positions.shape)
    return atoms


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_checkpoint_round_trip_gives_identical_outputs(name, dtype, tmp_path):
    torch.manual_seed(1)
    model = build_model(name, **SMALL_HPARAMS[name]).to(dtype)
    reference_eV = np.zeros(119)
    reference_eV[29] = -3.5
    model.set_atomic_energies(reference_eV)
    path = tmp_path / "model.pt"
    save_model_checkpoint(path, model, dataset_hash="abc123", extra={"epoch": 7})
    loaded, metadata = load_model(path, device="cpu")
    assert not loaded.training
    assert metadata["model_name"] == name and metadata["hparams"] == model.hparams
    assert metadata["dataset_hash"] == "abc123" and metadata["extra"] == {"epoch": 7}
    assert "state_dict" not in metadata
    graph = model.make_graph([rattled_copper()])
    energy, forces = energy_and_forces(model, graph)
    loaded_energy, loaded_forces = energy_and_forces(loaded, loaded.make_graph([rattled_copper()]))
    assert loaded_energy.dtype == dtype
    assert torch.equal(loaded_energy, energy) and torch.equal(loaded_forces, forces)
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed away


def test_checkpoint_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.pt"
    with pytest.raises(CheckpointError, match="missing.pt"):
        load_model(missing)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        load_model(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt"):
        load_model(foreign)
    truncated = tmp_path / "truncated.pt"
    save_model_checkpoint(truncated, build_model("schnet", **SMALL_HPARAMS["schnet"]), dataset_hash="x")
    truncated.write_bytes(truncated.read_bytes()[:-200])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_model(truncated)


def test_calculator_forces_match_energy_and_forces(name):
    calculator = load_calculator(name, seed=3, device="cpu", **SMALL_HPARAMS[name])
    atoms = rattled_copper()
    atoms.calc = calculator
    forces = atoms.get_forces()
    energy = atoms.get_potential_energy()
    expected_energy, expected_forces = energy_and_forces(calculator.model, calculator.model.make_graph([atoms]))
    assert energy == pytest.approx(expected_energy.item(), rel=1e-6)
    np.testing.assert_allclose(forces, expected_forces.numpy(), rtol=1e-6, atol=1e-7)
    assert np.abs(forces).max() > 1e-4
    assert atoms.get_potential_energy(force_consistent=True) == pytest.approx(energy)
    atoms.positions[0, 0] += 0.05  # a change of positions must trigger a new calculation
    assert not np.allclose(atoms.get_forces(), forces)


def test_load_calculator_by_name_is_seeded(name):
    atoms = rattled_copper()
    energies = []
    for seed in (0, 0, 1):
        atoms.calc = load_calculator(name, seed=seed, device="cpu", **SMALL_HPARAMS[name])
        energies.append(atoms.get_potential_energy())
    assert energies[0] == energies[1]
    assert energies[0] != energies[2]


def test_load_calculator_by_path_and_errors(tmp_path):
    fresh = load_calculator("schnet", seed=2, device="cpu", **SMALL_HPARAMS["schnet"])
    path = tmp_path / "schnet.pt"
    save_model_checkpoint(path, fresh.model, dataset_hash="h")
    loaded = load_calculator(str(path), device="cpu")
    assert isinstance(loaded, MLFFCalculator)
    atoms = rattled_copper()
    atoms.calc = fresh
    expected = atoms.get_forces()
    atoms.calc = loaded
    np.testing.assert_array_equal(atoms.get_forces(), expected)
    with pytest.raises(ValueError, match="hyperparameters are stored"):
        load_calculator(str(path), cutoff_A=5.0)
    with pytest.raises(ValueError, match="dimenet\\+\\+"):
        load_calculator("no-such-model-or-file")


def test_load_calculator_paper_default_dimenet():
    calculator = load_calculator("dimenet++", seed=0, cutoff_A=6.0)
    assert calculator.model.name == "dimenet++"
    assert calculator.model.hparams["hidden_channels"] == 128
    expected_device = "cuda" if torch.cuda.is_available() else "cpu"
    assert calculator.model.atomic_energies_eV.device.type == expected_device
