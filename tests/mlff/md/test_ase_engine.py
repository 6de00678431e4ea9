"""The ASE MD engine: integrator accuracy, ramp, thermostat, output file, seeds, instability handling."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.fd import calculate_numerical_forces
from ase.geometry import get_distances

from md_runs import ase_md
from mlff.md.ase_engine import velocity_verlet_step
from mlff.md.protocol import (
    MDProtocol,
    min_pair_distance_A,
    set_maxwell_boltzmann_velocities,
)
from mlff.trajectory import read_system, read_trajectory


def copper() -> Atoms:
    """32-atom fcc Cu cell: EMT makes it a cheap, smooth test system."""
    return bulk("Cu", cubic=True).repeat(2)


def nve_energies(timestep_fs: float, duration_fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Total and kinetic energy [n_steps] of an NVE run of Cu at 600 K."""
    atoms = copper()
    atoms.calc = EMT()
    set_maxwell_boltzmann_velocities(atoms, 600.0, np.random.default_rng(0))
    forces = atoms.get_forces()
    total, kinetic = [], []
    for _ in range(round(duration_fs / timestep_fs)):
        forces = velocity_verlet_step(atoms, timestep_fs, forces)
        kinetic.append(atoms.get_kinetic_energy())
        total.append(atoms.get_potential_energy() + kinetic[-1])
    return np.array(total), np.array(kinetic)


def test_maxwell_boltzmann_velocities_have_exact_temperature_and_no_drift():
    atoms = copper()
    set_maxwell_boltzmann_velocities(atoms, 321.0, np.random.default_rng(5))
    assert atoms.get_temperature() == pytest.approx(321.0)
    np.testing.assert_allclose(atoms.get_momenta().sum(axis=0), 0.0, atol=1e-12)


def test_velocity_verlet_conserves_energy_with_second_order_error():
    coarse_total, coarse_kinetic = nve_energies(timestep_fs=4.0, duration_fs=400.0)
    fine_total, fine_kinetic = nve_energies(timestep_fs=2.0, duration_fs=400.0)
    # Energy exchanges between kinetic and potential, but the total stays put ...
    assert fine_total.std() < 0.01 * fine_kinetic.std()
    assert coarse_total.std() < 0.02 * coarse_kinetic.std()
    for total, kinetic in ((coarse_total, coarse_kinetic), (fine_total, fine_kinetic)):
        drift = np.polyfit(np.arange(len(total)), total, 1)[0] * len(total)
        assert abs(drift) < 0.01 * kinetic.std()
    # ... and its fluctuation shrinks like dt^2 (factor 4 when the step is halved).
    assert 3.0 < coarse_total.std() / fine_total.std() < 5.0


def test_ramp_ends_at_the_target_temperature(tmp_path):
    protocol = MDProtocol(
        temperature_K=800.0, ramp_start_K=100.0, ramp_ps=0.2, production_ps=0.004, timestep_fs=2.0
    )
    summary = ase_md(copper(), EMT(), protocol, seed=3, out_path=tmp_path / "ramp.frames", progress=False)
    trajectory = read_trajectory(tmp_path / "ramp.frames")
    # Two steps after the rescaled ramp the thermostat has barely acted: the temperature is the
    # ramp's final one up to the change over two steps.
    assert trajectory.temperature_K[0] == pytest.approx(800.0, rel=0.05)
    assert summary["completed"]


@pytest.mark.slow
def test_nose_hoover_holds_the_canonical_temperature(tmp_path):
    target_K = 600.0
    protocol = MDProtocol(temperature_K=target_K, timestep_fs=4.0, ramp_ps=0.4, production_ps=8.0)
    atoms = copper()
    summary = ase_md(atoms, EMT(), protocol, seed=11, out_path=tmp_path / "nvt.frames", progress=False)
    temperatures = read_trajectory(tmp_path / "nvt.frames").temperature_K
    assert summary["temperature_K"] == pytest.approx(temperatures.mean())
    blocks = temperatures.reshape(8, -1).mean(axis=1)
    standard_error = blocks.std(ddof=1) / np.sqrt(len(blocks))
    assert standard_error < 0.03 * target_K  # the run is long enough for the check to mean something
    assert abs(temperatures.mean() - target_K) < max(4 * standard_error, 0.02 * target_K)
    # Canonical kinetic-energy fluctuations: std(T) / T = sqrt(2 / (3 N)).
    expected_std = target_K * np.sqrt(2.0 / (3 * len(atoms)))
    assert temperatures.std() == pytest.approx(expected_std, rel=0.25)


def test_output_file_frames_time_axis_and_metadata(tmp_path):
    protocol = MDProtocol(temperature_K=500.0, ramp_ps=0.02, production_ps=0.1, save_every_steps=5)
    path = tmp_path / "out.frames"
    summary = ase_md(copper(), EMT(), protocol, seed=2, out_path=path, record_forces=True, progress=False)
    trajectory = read_trajectory(path)
    assert protocol.n_ramp_steps == 10 and protocol.n_production_steps == 50
    assert summary["n_frames_written"] == trajectory.n_frames == 10
    assert summary["n_steps_run"] == 60
    assert summary["completed"] and summary["stopped_early_reason"] is None and summary["collapse_time_ps"] is None
    np.testing.assert_array_equal(trajectory.step, np.arange(5, 51, 5))
    np.testing.assert_allclose(trajectory.time_fs, trajectory.step * 2.0)
    assert trajectory.forces_eV_A.shape == (10, 32, 3)
    # Stored energies and forces are EMT's for the stored positions.
    check = Atoms(trajectory.numbers, positions=trajectory.positions_A[-1], cell=trajectory.cell_A, pbc=True)
    check.calc = EMT()
    assert check.get_potential_energy() == pytest.approx(trajectory.energy_eV[-1], abs=1e-8)
    np.testing.assert_allclose(check.get_forces(), trajectory.forces_eV_A[-1], atol=1e-8)
    for name, value in dataclasses.asdict(protocol).items():
        assert trajectory.metadata[name] == value
    assert trajectory.metadata["seed"] == 2 and trajectory.metadata["engine"] == "ase"
    assert trajectory.metadata["target_temperature_K"] == 500.0
    assert summary["seed"] == 2 and summary["engine"] == "ase" and summary["wall_s"] > 0
    numbers, cell_A = read_system(path)  # the header alone
    np.testing.assert_array_equal(numbers, copper().numbers)
    np.testing.assert_array_equal(cell_A, copper().cell.array)

    ase_md(copper(), EMT(), protocol, seed=2, out_path=tmp_path / "no_forces.frames", progress=False)
    assert read_trajectory(tmp_path / "no_forces.frames").forces_eV_A is None


def test_seeds_give_reproducible_and_distinct_trajectories(tmp_path):
    protocol = MDProtocol(temperature_K=500.0, ramp_ps=0.02, production_ps=0.04)
    positions = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        ase_md(copper(), EMT(), protocol, seed=seed, out_path=tmp_path / f"{name}.frames", progress=False)
        positions[name] = read_trajectory(tmp_path / f"{name}.frames").positions_A
    np.testing.assert_array_equal(positions["a"], positions["b"])
    assert np.abs(positions["a"] - positions["c"]).max() > 0.01


def test_input_atoms_are_not_modified(tmp_path):
    atoms = copper()
    before = atoms.positions.copy()
    ase_md(atoms, EMT(), MDProtocol(temperature_K=300.0, ramp_ps=0.0, production_ps=0.01), 1, tmp_path / "x.frames",
           progress=False)
    np.testing.assert_array_equal(atoms.positions, before)
    assert atoms.calc is None


class FailingEMT(EMT):
    """EMT that returns NaN energy and forces from call ``n_good + 1`` on."""

    def __init__(self, n_good: int):
        super().__init__()
        self.n_good, self.n_calls = n_good, 0

    def calculate(self, atoms=None, properties=("energy", "forces"), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.n_calls += 1
        if self.n_calls > self.n_good:
            self.results["energy"] = np.nan
            self.results["forces"] = np.full_like(self.results["forces"], np.nan)


class PairPotential(Calculator):
    """Pairwise Gaussian well E = -depth * sum exp(-r^2 / (2 width^2)) (minimum image): purely
    attractive, so atoms fall into each other."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, depth_eV: float, width_A: float):
        super().__init__()
        self.depth_eV, self.width_A = depth_eV, width_A

    def calculate(self, atoms=None, properties=("energy", "forces"), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        vectors, distances = get_distances(self.atoms.positions, cell=self.atoms.cell, pbc=True)  # [n, n, 3], [n, n]
        pair_energy = -self.depth_eV * np.exp(-(distances**2) / (2 * self.width_A**2))  # [n, n]
        np.fill_diagonal(pair_energy, 0.0)
        # vectors[i, j] = r_j - r_i, and -dE_ij/dr_i = E_ij (r_i - r_j) / width^2
        forces = -(pair_energy[:, :, None] * vectors).sum(axis=1) / self.width_A**2  # [n, 3]
        self.results = {"energy": 0.5 * pair_energy.sum(), "forces": forces}


class InvertedHarmonic(Calculator):
    """E = -k/2 |r - r0|^2 around the starting sites: an exponential runaway that heats the system."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, sites_A: np.ndarray, stiffness_eV_A2: float):
        super().__init__()
        self.sites_A, self.stiffness = sites_A.copy(), stiffness_eV_A2

    def calculate(self, atoms=None, properties=("energy", "forces"), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        displacement = self.atoms.positions - self.sites_A  # [n_atoms, 3]
        self.results = {"energy": -0.5 * self.stiffness * (displacement**2).sum(), "forces": self.stiffness * displacement}


def test_pair_potential_forces_are_the_energy_gradient():
    atoms = Atoms("Ar3", positions=[[0, 0, 0], [1.5, 0.3, 0], [0.2, 1.8, 0.9]], cell=[6, 6, 6], pbc=True)
    atoms.calc = PairPotential(depth_eV=1.0, width_A=1.5)
    np.testing.assert_allclose(atoms.get_forces(), calculate_numerical_forces(atoms, eps=1e-5), atol=1e-6)


@pytest.mark.parametrize("save_every_steps", [1, 5])
def test_non_finite_forces_stop_the_run_before_being_written(tmp_path, save_every_steps):
    protocol = MDProtocol(temperature_K=500.0, ramp_ps=0.02, production_ps=0.2, save_every_steps=save_every_steps)
    failing_step = protocol.n_ramp_steps + 37  # call 1 is the initial force evaluation, call k + 1 is step k
    path = tmp_path / "nan.frames"
    summary = ase_md(copper(), FailingEMT(n_good=failing_step), protocol, seed=1, out_path=path, progress=False)
    assert not summary["completed"]
    assert summary["stopped_early_reason"] == "non_finite"
    assert summary["n_steps_run"] == failing_step
    assert summary["collapse_time_ps"] == pytest.approx(37 * protocol.timestep_fs / 1000)
    trajectory = read_trajectory(path)
    assert summary["n_frames_written"] == trajectory.n_frames == 36 // save_every_steps
    assert np.isfinite(trajectory.energy_eV).all() and np.isfinite(trajectory.positions_A).all()
    assert trajectory.step[-1] <= 36


def test_non_finite_forces_during_the_ramp_write_nothing(tmp_path):
    protocol = MDProtocol(temperature_K=500.0, ramp_ps=0.1, production_ps=0.1)
    summary = ase_md(copper(), FailingEMT(n_good=20), protocol, seed=1, out_path=tmp_path / "r.frames", progress=False)
    assert summary["stopped_early_reason"] == "non_finite"
    assert summary["collapse_time_ps"] == pytest.approx((20 - protocol.n_ramp_steps) * protocol.timestep_fs / 1000)
    assert summary["temperature_K"] is None
    assert read_trajectory(tmp_path / "r.frames").n_frames == summary["n_frames_written"] == 0


def test_purely_attractive_potential_fuses_atoms_and_stops(tmp_path):
    atoms = Atoms("Ar4", positions=[[0, 0, 0], [3, 0, 0], [0, 3, 0], [0, 0, 3]], cell=[10, 10, 10], pbc=True)
    protocol = MDProtocol(temperature_K=300.0, ramp_start_K=300.0, ramp_ps=0.0, production_ps=2.0)
    path = tmp_path / "fused.frames"
    summary = ase_md(atoms, PairPotential(depth_eV=1.0, width_A=1.5), protocol, seed=4, out_path=path, progress=False)
    assert summary["stopped_early_reason"] == "atom_fusion"
    assert 0 < summary["collapse_time_ps"] < protocol.production_ps
    trajectory = read_trajectory(path)
    assert trajectory.n_frames == summary["n_frames_written"] == summary["n_steps_run"] - 1
    for positions in trajectory.positions_A:
        _, distances = get_distances(positions, cell=trajectory.cell_A, pbc=True)
        assert distances[np.triu_indices(len(positions), 1)].min() >= 1.0


def test_runaway_heating_stops_with_temperature_blowup(tmp_path):
    atoms = Atoms("Ar4", positions=[[0, 0, 0], [6, 0, 0], [0, 6, 0], [0, 0, 6]], cell=[12, 12, 12], pbc=True)
    protocol = MDProtocol(temperature_K=300.0, ramp_start_K=300.0, ramp_ps=0.0, production_ps=2.0)
    calculator = InvertedHarmonic(atoms.positions, stiffness_eV_A2=1.0)
    path = tmp_path / "hot.frames"
    summary = ase_md(atoms, calculator, protocol, seed=4, out_path=path, max_temperature_K=3000.0, progress=False)
    assert summary["stopped_early_reason"] == "temperature_blowup"
    assert 0 < summary["collapse_time_ps"] < protocol.production_ps
    trajectory = read_trajectory(path)
    assert trajectory.n_frames == summary["n_frames_written"] > 0
    assert trajectory.temperature_K.max() <= 3000.0


def test_min_pair_distance_matches_ase():
    atoms = copper()
    atoms.rattle(0.2, seed=1)
    _, distances = get_distances(atoms.positions, cell=atoms.cell, pbc=True)
    expected = distances[np.triu_indices(len(atoms), 1)].min()
    assert min_pair_distance_A(atoms, cutoff_A=3.0) == pytest.approx(expected)
    assert min_pair_distance_A(atoms, cutoff_A=0.5 * expected) == np.inf


@pytest.mark.parametrize(
    "changes",
    [
        {"temperature_K": -5.0},
        {"timestep_fs": 0.0},
        {"ramp_ps": -1.0},
        {"production_ps": float("nan")},
        {"thermostat_time_fs": 0.0},
        {"save_every_steps": 0},
        {"save_every_steps": 2.5},
        {"ramp_ps": 0.003},  # 1.5 steps of 2 fs
        {"production_ps": 0.002, "save_every_steps": 2},  # one step, no frame
    ],
)
def test_protocol_rejects_bad_values(changes):
    with pytest.raises(ValueError, match="MDProtocol"):
        MDProtocol(**{"temperature_K": 800.0, **changes})


def test_protocol_defaults_follow_the_paper():
    protocol = MDProtocol(temperature_K=1000.0)
    assert protocol.n_ramp_steps * protocol.timestep_fs == pytest.approx(5.0 * 1000)
    assert protocol.n_production_steps * protocol.timestep_fs == pytest.approx(50.0 * 1000)
    assert (protocol.timestep_fs, protocol.ramp_start_K) == (2.0, 100.0)
