"""The LAMMPS MD engine against the ASE engine: same forces, same NVE trajectory, same RDF, same files, restarts."""

from __future__ import annotations

import dataclasses
import os
import signal

import numpy as np
import pytest
import torch
from ase import Atoms

from analysis.rdf import rdf, rdf_mae
from md_runs import ase_md, lammps_md
from mlff import preemption
from mlff.calculator import MLFFCalculator
from mlff.graph import edge_vectors_A
from mlff.md.ase_engine import velocity_verlet_step
from mlff.md.checkpoint import read_md_checkpoint
from mlff.md.lammps_engine import LammpsSystem, lammps_cell
from mlff.md.protocol import MDProtocol, set_maxwell_boltzmann_velocities
from mlff.models import ForceField, build_model
from mlff.models.schnet import cosine_cutoff
from mlff.structures import load_structure
from mlff.trajectory import read_trajectory

pytestmark = pytest.mark.lammps

NVE_STEPS = 40
# Both engines integrate with velocity Verlet on the same forces; they differ only in unit
# constants (LAMMPS metal's force-to-acceleration factor 1/1.0364269e-4 against ASE's CODATA-2018
# value, ~1e-8 relative) and floating-point order. Measured after 40 steps of Li2S at 300 K:
# positions 1e-9 Å, velocities 2e-9 relative.
NVE_POSITION_TOLERANCE_A = 1e-8
NVE_VELOCITY_TOLERANCE = 1e-7  # relative to the largest velocity component


def tiny_schnet(seed: int = 0) -> ForceField:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model("schnet", hidden_channels=16, num_interactions=1, cutoff_A=4.0).double()


class BornMayer(ForceField):
    """Repulsive pair energy A exp(-r / rho) (cosine cutoff): a stable soft-sphere stand-in for long runs.

    An untrained SchNet has no repulsive core and lets atoms fuse within ~0.1 ps, too soon for RDF
    statistics; this model goes through the same graph and autograd path.
    """

    name = "born_mayer"

    def __init__(self, prefactor_eV: float = 500.0, decay_length_A: float = 0.3, cutoff_A: float = 4.0):
        super().__init__({"cutoff_A": cutoff_A, "max_neighbours": 500})
        self.prefactor_eV, self.decay_length_A = prefactor_eV, decay_length_A
        self.double()

    def atom_energies_eV(self, graph):
        distance_A = edge_vectors_A(graph).norm(dim=-1)  # [n_edges]
        pair_eV = 0.5 * self.prefactor_eV * torch.exp(-distance_A / self.decay_length_A)
        pair_eV = pair_eV * cosine_cutoff(distance_A, self.cutoff_A)  # [n_edges]
        energy = torch.zeros(graph.n_atoms, dtype=pair_eV.dtype)
        return energy.index_add_(0, graph.edge_index[1], pair_eV)


class SignalAt(BornMayer):
    """Sends this process SIGTERM at its ``at``-th evaluation, as Slurm would."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, graph):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().forward(graph)


def mirrored(atoms: Atoms) -> Atoms:
    """The mirror image of ``atoms``, in a left-handed cell."""
    return Atoms(numbers=atoms.numbers, positions=-atoms.positions, cell=-atoms.cell.array, pbc=True)


def sheared(atoms: Atoms) -> Atoms:
    """``atoms`` in a triclinic cell (atoms move with it)."""
    atoms = atoms.copy()
    shear = np.array([[1.0, 0.1, -0.05], [0.0, 1.0, 0.15], [0.0, 0.0, 1.0]])
    atoms.set_cell(atoms.cell.array @ shear, scale_atoms=True)
    return atoms


def test_lammps_cell_is_lower_triangular_and_maps_back():
    for cell_A in (mirrored(load_structure("Li2S")).cell.array, sheared(load_structure("Li2S")).cell.array):
        box_A, rotation = lammps_cell(cell_A)
        assert np.all(np.triu(box_A, 1) == 0.0) and np.all(np.diag(box_A) > 0.0)
        np.testing.assert_allclose(box_A @ rotation, cell_A, atol=1e-12)
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)


@pytest.mark.parametrize("cell", ["cubic", "left-handed", "triclinic"])
def test_first_step_forces_equal_the_ase_calculator(cell):
    atoms = {"cubic": lambda a: a, "left-handed": mirrored, "triclinic": sheared}[cell](load_structure("Li2S"))
    atoms.rattle(0.1, seed=1)
    model = tiny_schnet()
    expected = MLFFCalculator(model).get_forces(atoms)
    with LammpsSystem(atoms, model, timestep_fs=2.0) as system:
        system.use_nve()
        system.run(0)
        ids = system.lammps.numpy.extract_atom("id")[: len(atoms)].copy()
        lammps_forces = system.lammps.numpy.extract_atom("f")[: len(atoms)] @ system.rotation  # what LAMMPS integrates
    error = np.abs(lammps_forces - expected[ids - 1]).max()
    assert np.abs(expected).max() > 1e-3  # the untrained model's forces are small but not zero
    assert error < 1e-5 and error < 1e-8 * np.abs(expected).max()


def test_short_nve_run_follows_ase_velocity_verlet():
    atoms = load_structure("Li2S")
    set_maxwell_boltzmann_velocities(atoms, 300.0, np.random.default_rng(0))
    model = tiny_schnet()
    with LammpsSystem(atoms, model, timestep_fs=2.0) as system:
        system.use_nve()
        system.run(NVE_STEPS)
        from_lammps = system.atoms()
    atoms.calc = MLFFCalculator(model)
    forces = atoms.get_forces()
    for _ in range(NVE_STEPS):
        forces = velocity_verlet_step(atoms, 2.0, forces)
    displacement_A = from_lammps.positions - atoms.positions
    displacement_A -= np.round(displacement_A @ np.linalg.inv(atoms.cell.array)) @ atoms.cell.array  # LAMMPS wraps
    assert np.abs(atoms.positions - load_structure("Li2S").positions).max() > 0.05  # the atoms did move
    assert np.abs(displacement_A).max() < NVE_POSITION_TOLERANCE_A
    velocity_error = np.abs(from_lammps.get_velocities() - atoms.get_velocities()).max()
    assert velocity_error < NVE_VELOCITY_TOLERANCE * np.abs(atoms.get_velocities()).max()


def production_rdf(path):
    frames = read_trajectory(path)
    return rdf(frames.positions_A, frames.cell_A, frames.numbers, r_max_A=5.0, n_bins=50, pairs=[("Li", "S")])


@pytest.mark.slow
def test_nvt_rdf_is_statistically_the_same_in_both_engines(tmp_path):
    """Independent seeds: the LAMMPS run differs from an ASE run no more than two ASE runs differ
    from each other, while the same comparison does tell a run at 400 K from one at 1000 K."""
    atoms, model = load_structure("Li2S"), BornMayer()
    hot = MDProtocol(temperature_K=1000.0, ramp_ps=0.1, production_ps=2.0, save_every_steps=5)
    cold = dataclasses.replace(hot, temperature_K=400.0)
    for seed in (1, 2):
        ase_md(atoms, MLFFCalculator(model), hot, seed, tmp_path / f"ase{seed}.frames", progress=False)
    lammps_md(atoms, model, hot, 3, tmp_path / "lammps.frames", progress=False)
    lammps_md(atoms, model, cold, 3, tmp_path / "cold.frames", progress=False)
    ase1, ase2, lammps, cold = (production_rdf(tmp_path / f"{n}.frames") for n in ("ase1", "ase2", "lammps", "cold"))
    noise = rdf_mae(ase1, ase2)
    print(f"RDF MAE: ase-ase {noise:.4f}, ase1-lammps {rdf_mae(lammps, ase1):.4f}, "
          f"ase2-lammps {rdf_mae(lammps, ase2):.4f}, 1000 K-400 K {rdf_mae(cold, ase1):.4f}")
    assert rdf_mae(lammps, ase1) < 1.5 * noise and rdf_mae(lammps, ase2) < 1.5 * noise
    assert rdf_mae(cold, ase1) > 2.0 * noise


class NaNFrom(BornMayer):
    """Returns NaN energies from its ``at``-th evaluation on, like a model driven off its training data."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, graph):
        self.calls += 1
        energy = super().forward(graph)
        return energy * float("nan") if self.calls >= self.at else energy


SHORT = MDProtocol(temperature_K=800.0, ramp_ps=0.02, production_ps=0.04, save_every_steps=5)


def test_output_file_and_summary_match_the_ase_engine(tmp_path):
    atoms, model = load_structure("Li2S"), BornMayer()
    ase_summary = ase_md(atoms, MLFFCalculator(model), SHORT, 5, tmp_path / "ase.frames", record_forces=True,
                         progress=False, metadata={"model": "born_mayer"})
    lammps_summary = lammps_md(atoms, model, SHORT, 5, tmp_path / "lammps.frames", record_forces=True,
                                   progress=False, metadata={"model": "born_mayer"})
    ase, lammps = read_trajectory(tmp_path / "ase.frames"), read_trajectory(tmp_path / "lammps.frames")
    assert set(lammps_summary) == set(ase_summary)
    assert lammps_summary["engine"] == "lammps" and lammps_summary["completed"]
    assert lammps_summary["n_frames_written"] == ase_summary["n_frames_written"] == lammps.n_frames == 4
    assert set(lammps.metadata) == set(ase.metadata) and lammps.metadata["engine"] == "lammps"
    assert {k: v for k, v in lammps.metadata.items() if k not in ("engine", "calculator")} == {
        k: v for k, v in ase.metadata.items() if k not in ("engine", "calculator")
    }
    np.testing.assert_array_equal(lammps.numbers, ase.numbers)
    np.testing.assert_array_equal(lammps.cell_A, ase.cell_A)
    np.testing.assert_array_equal(lammps.step, ase.step)
    np.testing.assert_array_equal(lammps.time_fs, ase.time_fs)
    # Same seed, so same initial velocities. The ramp's rescaling differs by the two engines'
    # Boltzmann constants (1.1e-6 relative), which the Nosé–Hoover chains then carry; measured
    # after 10 ramp + 20 NVT steps: positions 5e-7 Å, temperatures 2e-6 relative.
    np.testing.assert_allclose(lammps.positions_A, ase.positions_A, rtol=0, atol=1e-5)
    np.testing.assert_allclose(lammps.temperature_K, ase.temperature_K, rtol=1e-5)
    # Recorded energies and forces are the model's at the recorded positions.
    calculator = MLFFCalculator(model)
    for frame in range(lammps.n_frames):
        snapshot = Atoms(numbers=lammps.numbers, positions=lammps.positions_A[frame], cell=lammps.cell_A, pbc=True)
        np.testing.assert_allclose(lammps.forces_eV_A[frame], calculator.get_forces(snapshot), rtol=0, atol=1e-9)
        assert lammps.energy_eV[frame] == pytest.approx(calculator.get_potential_energy(snapshot), abs=1e-9)
    assert lammps_summary["temperature_K"] == pytest.approx(ase_summary["temperature_K"], rel=1e-5)


def test_untrained_schnet_fuses_atoms_at_the_same_time_in_both_engines(tmp_path):
    protocol = MDProtocol(temperature_K=800.0, ramp_ps=0.04, production_ps=0.4, save_every_steps=5)
    atoms, model = load_structure("Li2S"), tiny_schnet()
    ase_summary = ase_md(atoms, MLFFCalculator(model), protocol, 1, tmp_path / "ase.frames", progress=False)
    lammps_summary = lammps_md(atoms, model, protocol, 1, tmp_path / "lammps.frames", progress=False)
    assert ase_summary["stopped_early_reason"] == "atom_fusion"
    for key in ("stopped_early_reason", "collapse_time_ps", "n_steps_run", "n_frames_written"):
        assert lammps_summary[key] == ase_summary[key]
    assert read_trajectory(tmp_path / "lammps.frames").n_frames == lammps_summary["n_frames_written"]


def test_non_finite_forces_stop_the_run_at_their_step(tmp_path):
    protocol = MDProtocol(temperature_K=800.0, ramp_ps=0.02, production_ps=0.1, save_every_steps=5)
    summary = lammps_md(load_structure("Li2S"), NaNFrom(at=25), protocol, 1, tmp_path / "nan.frames",
                            progress=False)
    written = read_trajectory(tmp_path / "nan.frames")
    assert summary["stopped_early_reason"] == "non_finite" and not summary["completed"]
    # Evaluations: setup at step 0, steps 1-10, setup of production at step 10, steps 11-...: call 25 is step 23.
    assert summary["n_steps_run"] == 23
    assert summary["collapse_time_ps"] == pytest.approx((23 - protocol.n_ramp_steps) * protocol.timestep_fs / 1000)
    assert written.step.tolist() == [5, 10] and np.isfinite(written.positions_A).all()


PROTOCOL = MDProtocol(temperature_K=800.0, ramp_ps=0.04, production_ps=0.1, save_every_steps=3)
RESTART_POSITION_TOLERANCE_A = 1e-9


def _md(tmp_path, name, model):
    return lammps_md(load_structure("Li2S"), model, PROTOCOL, 7, tmp_path / f"{name}.frames", progress=False,
                         checkpoint_path=tmp_path / f"{name}.checkpoint.npz", checkpoint_every_steps=10)


@pytest.mark.parametrize("stop_call", [9, 45], ids=["during_ramp", "during_production"])
def test_run_stopped_by_a_signal_resumes_to_the_same_trajectory(tmp_path, stop_signals, stop_call):
    straight = _md(tmp_path, "straight", BornMayer())
    with pytest.raises(preemption.Preempted):
        _md(tmp_path, "stopped", SignalAt(stop_call))
    saved_step = read_md_checkpoint(tmp_path / "stopped.checkpoint.npz").step
    assert 0 < saved_step < PROTOCOL.n_ramp_steps + PROTOCOL.n_production_steps
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("stopped")) == [
        "stopped.checkpoint.npz", "stopped.frames"]  # LAMMPS' restart file is inside the checkpoint
    preemption.clear()
    resumed = _md(tmp_path, "stopped", BornMayer())
    reference, continued = read_trajectory(tmp_path / "straight.frames"), read_trajectory(tmp_path / "stopped.frames")
    assert resumed["resumed_from_step"] == saved_step
    np.testing.assert_array_equal(continued.step, reference.step)
    np.testing.assert_allclose(continued.positions_A, reference.positions_A, rtol=0, atol=RESTART_POSITION_TOLERANCE_A)
    np.testing.assert_allclose(continued.temperature_K, reference.temperature_K, rtol=1e-9)
    assert resumed["n_frames_written"] == straight["n_frames_written"] == reference.n_frames
    assert resumed["temperature_K"] == pytest.approx(straight["temperature_K"], rel=1e-9)


def test_refuses_a_checkpoint_of_another_run(tmp_path, stop_signals):
    with pytest.raises(preemption.Preempted):
        _md(tmp_path, "run", SignalAt(20))
    with pytest.raises(ValueError, match="checkpoint of another run"):
        lammps_md(load_structure("Li2S"), BornMayer(), PROTOCOL, 8, tmp_path / "run.frames", progress=False,
                      checkpoint_path=tmp_path / "run.checkpoint.npz")
