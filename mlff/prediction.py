"""Energies and forces of every frame of a trajectory: a ForceField's in batches, or any ASE calculator's."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from mlff.models import ForceField, energy_and_forces
from mlff.trajectory import Trajectory


def predict(
    model: ForceField, trajectory: Trajectory, batch_size: int = 8, device: str | torch.device | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Energies [n_frames] (eV) and forces [n_frames, n_atoms, 3] (eV/Å) as float64 arrays.

    ``device`` moves the model there first; None keeps it where it is.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if device is not None:
        model.to(device)
    energies_eV, forces_eV_A = [], []
    for start in range(0, trajectory.n_frames, batch_size):
        frames = range(start, min(start + batch_size, trajectory.n_frames))
        structures = [(trajectory.numbers, trajectory.positions_A[frame], trajectory.cell_A) for frame in frames]
        energy, forces = energy_and_forces(model, model.make_graph(structures))
        energies_eV.append(energy.cpu().numpy())
        forces_eV_A.append(forces.cpu().numpy().reshape(len(frames), trajectory.n_atoms, 3))
    if not energies_eV:
        return np.zeros(0), np.zeros((0, trajectory.n_atoms, 3))
    return np.concatenate(energies_eV).astype(np.float64), np.concatenate(forces_eV_A).astype(np.float64)


def predict_with_calculator(calculator: BaseCalculator, trajectory: Trajectory) -> tuple[np.ndarray, np.ndarray]:
    """Energies [n_frames] (eV) and forces [n_frames, n_atoms, 3] (eV/Å) of an ASE calculator, frame by frame."""
    atoms = Atoms(numbers=trajectory.numbers, cell=trajectory.cell_A, pbc=True)
    atoms.calc = calculator
    energies_eV, forces_eV_A = np.zeros(trajectory.n_frames), np.zeros((trajectory.n_frames, trajectory.n_atoms, 3))
    for frame in range(trajectory.n_frames):
        atoms.positions = trajectory.positions_A[frame]
        energies_eV[frame], forces_eV_A[frame] = atoms.get_potential_energy(), atoms.get_forces()
    return energies_eV, forces_eV_A
