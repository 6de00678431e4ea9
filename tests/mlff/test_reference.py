"""Reference data: importing trajectories from extxyz / ASE traj / vasprun.xml / XDATCAR, and generating them."""

from __future__ import annotations

import socket
import warnings

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from mlff.md.protocol import MDProtocol
from mlff.reference import generate_reference, import_reference
from mlff.structures import load_structure
from mlff.trajectory import read_trajectory, wrap_positions_A

N_FRAMES = 4


def emt_frames(n_frames: int = N_FRAMES) -> list[Atoms]:
    """Rattled Cu frames with EMT energies and forces attached; some atoms moved outside the cell."""
    frames = []
    for index in range(n_frames):
        atoms = bulk("Cu", cubic=True).repeat((2, 1, 1))
        atoms.rattle(0.1, seed=index)
        atoms.positions[0] += atoms.cell[0] * 1.02  # outside the cell: must come back wrapped
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        frames.append(atoms)
    return frames


def assert_matches_frames(trajectory, frames, with_labels=True):
    assert trajectory.n_frames == len(frames)
    np.testing.assert_array_equal(trajectory.numbers, frames[0].numbers)
    np.testing.assert_allclose(trajectory.cell_A, frames[0].cell.array, atol=1e-8)
    for stored, frame in zip(trajectory.positions_A, frames, strict=True):
        np.testing.assert_allclose(stored, wrap_positions_A(frame.positions, frame.cell.array), atol=1e-6)
    fractional = trajectory.positions_A @ np.linalg.inv(trajectory.cell_A)
    assert (fractional >= 0).all() and (fractional < 1).all()
    if with_labels:
        np.testing.assert_allclose(trajectory.energy_eV, [f.get_potential_energy() for f in frames], atol=1e-8)
        np.testing.assert_allclose(trajectory.forces_eV_A, np.stack([f.get_forces() for f in frames]), atol=1e-8)


@pytest.mark.parametrize("filename, ase_format", [("md.extxyz", "extxyz"), ("md.xyz", "extxyz"), ("md.traj", "traj")])
def test_import_round_trip_keeps_energies_and_forces(tmp_path, filename, ase_format):
    frames = emt_frames()
    ase.io.write(tmp_path / filename, frames, format=ase_format)
    summary = import_reference(tmp_path / filename, tmp_path / "ref.frames", timestep_fs=2.0)
    assert summary == {
        "n_frames": N_FRAMES,
        "n_atoms": 8,
        "formula": "Cu8",
        "has_energies": True,
        "has_forces": True,
        "timestep_fs": 2.0,
        "source_format": ase_format,
        "out_path": str(tmp_path / "ref.frames"),
    }
    trajectory = read_trajectory(tmp_path / "ref.frames")
    assert_matches_frames(trajectory, frames)
    np.testing.assert_allclose(trajectory.time_fs, 2.0 * np.arange(N_FRAMES))
    assert trajectory.metadata["source"] == filename and len(trajectory.metadata["source_sha256"]) == 64


def test_import_xdatcar_gives_positions_only(tmp_path):
    frames = emt_frames()
    ase.io.write(tmp_path / "XDATCAR", frames, format="vasp-xdatcar")
    summary = import_reference(tmp_path / "XDATCAR", tmp_path / "ref.frames", timestep_fs=1.0)
    assert summary["has_energies"] is False and summary["has_forces"] is False
    assert summary["n_frames"] == N_FRAMES
    trajectory = read_trajectory(tmp_path / "ref.frames")
    assert trajectory.energy_eV is None and trajectory.forces_eV_A is None
    assert_matches_frames(trajectory, frames, with_labels=False)


def _varray(name: str, rows: np.ndarray) -> str:
    body = "".join("<v>" + " ".join(f"{value:.12f}" for value in row) + "</v>" for row in rows)
    return f'<varray name="{name}">{body}</varray>'


def _structure(atoms: Atoms, name: str | None = None) -> str:
    attribute = f' name="{name}"' if name else ""
    return (
        f"<structure{attribute}><crystal>{_varray('basis', atoms.cell.array)}</crystal>"
        f"{_varray('positions', atoms.get_scaled_positions(wrap=False))}</structure>"
    )


def minimal_vasprun(frames: list[Atoms], potim_fs: float) -> str:
    """The smallest vasprun.xml of an MD run (IBRION = 0) that pymatgen's Vasprun parses without warnings:
    generator, parameters (IBRION, POTIM, NSW, NELM), atom list, initial structure and one
    <calculation> per ionic step with structure, forces and energies. The frame's energy is the
    free energy e_fr_energy (the one VASP's forces belong to); the other two are offset so a mix-up shows."""
    atom_rows = "".join(f"<rc><c>{symbol}</c><c>1</c></rc>" for symbol in frames[0].get_chemical_symbols())
    calculations = "".join(
        f"<calculation>{_structure(frame)}{_varray('forces', frame.get_forces())}<energy>"
        + "".join(
            f'<i name="{key}">{frame.get_potential_energy() + offset_eV:.12f}</i>'
            for key, offset_eV in (("e_fr_energy", 0.0), ("e_wo_entrp", 0.02), ("e_0_energy", 0.01))
        )
        + "</energy></calculation>"
        for frame in frames
    )
    return (
        '<?xml version="1.0" encoding="ISO-8859-1"?><modeling>'
        '<generator><i name="program" type="string">vasp</i><i name="version" type="string">6.4.2</i></generator>'
        f'<parameters><separator name="ionic"><i type="int" name="IBRION">0</i><i name="POTIM">{potim_fs}</i>'
        f'<i type="int" name="NSW">{len(frames)}</i></separator>'
        '<separator name="electronic"><i type="int" name="NELM">60</i></separator></parameters>'
        f'<atominfo><array name="atoms"><set>{atom_rows}</set></array></atominfo>'
        f'{_structure(frames[0], "initialpos")}{calculations}</modeling>'
    )


def test_import_vasprun_takes_energies_forces_and_timestep(tmp_path):
    frames = emt_frames()
    (tmp_path / "vasprun.xml").write_text(minimal_vasprun(frames, potim_fs=1.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the minimal file is complete enough that pymatgen does not complain
        summary = import_reference(tmp_path / "vasprun.xml", tmp_path / "ref.frames")
    assert summary["has_energies"] and summary["has_forces"] and summary["source_format"] == "vasprun"
    assert summary["timestep_fs"] == 1.5
    trajectory = read_trajectory(tmp_path / "ref.frames")
    assert_matches_frames(trajectory, frames)
    np.testing.assert_allclose(trajectory.time_fs, 1.5 * np.arange(N_FRAMES))
    # An explicit timestep wins over POTIM.
    assert import_reference(tmp_path / "vasprun.xml", tmp_path / "ref2.frames", timestep_fs=3.0)["timestep_fs"] == 3.0


def test_unknown_format_names_the_file_and_the_formats(tmp_path):
    (tmp_path / "data.csv").write_text("1,2,3\n")
    with pytest.raises(ValueError, match="data.csv") as info:
        import_reference(tmp_path / "data.csv", tmp_path / "ref.frames", timestep_fs=1.0)
    assert "extxyz" in str(info.value).lower() and "vasprun" in str(info.value) and "XDATCAR" in str(info.value)


def test_missing_or_corrupt_file_raises_naming_it(tmp_path):
    with pytest.raises(ValueError, match="absent.extxyz"):
        import_reference(tmp_path / "absent.extxyz", tmp_path / "ref.frames", timestep_fs=1.0)
    (tmp_path / "vasprun.xml").write_text("<modeling><broken")
    with pytest.raises(ValueError, match="vasprun.xml"):
        import_reference(tmp_path / "vasprun.xml", tmp_path / "ref.frames", timestep_fs=1.0)


def test_changing_cell_raises(tmp_path):
    frames = emt_frames()
    frames[2].set_cell(frames[2].cell.array * 1.01, scale_atoms=True)
    ase.io.write(tmp_path / "npt.extxyz", frames, format="extxyz")
    with pytest.raises(ValueError, match="frame 2"):
        import_reference(tmp_path / "npt.extxyz", tmp_path / "ref.frames", timestep_fs=1.0)


def test_missing_timestep_raises(tmp_path):
    ase.io.write(tmp_path / "md.extxyz", emt_frames(), format="extxyz")
    with pytest.raises(ValueError, match="timestep_fs"):
        import_reference(tmp_path / "md.extxyz", tmp_path / "ref.frames")


def test_generate_reference_with_emt_records_energies_and_forces(tmp_path):
    atoms = bulk("Cu", cubic=True).repeat((2, 2, 1))
    protocol = MDProtocol(temperature_K=400.0, ramp_ps=0.01, production_ps=0.02)
    path = tmp_path / "emt.frames"
    summary = generate_reference(atoms, "ase.calculators.emt:EMT", protocol, seed=5, out_path=path, progress=False)
    assert summary["completed"] and summary["calculator"] == "ase.calculators.emt:EMT"
    assert summary["calculator_version"] == ase.__version__
    trajectory = read_trajectory(path)
    assert trajectory.n_frames == summary["n_frames_written"] == protocol.n_production_steps
    assert trajectory.metadata["calculator"] == "ase.calculators.emt:EMT"
    check = Atoms(trajectory.numbers, positions=trajectory.positions_A[3], cell=trajectory.cell_A, pbc=True)
    check.calc = EMT()
    assert check.get_potential_energy() == pytest.approx(trajectory.energy_eV[3], abs=1e-8)
    np.testing.assert_allclose(check.get_forces(), trajectory.forces_eV_A[3], atol=1e-8)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_generate_reference_with_chgnet_runs_offline(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted during an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    protocol = MDProtocol(temperature_K=800.0, ramp_ps=0.006, production_ps=0.01)
    path = tmp_path / "chgnet.frames"
    summary = generate_reference(
        load_structure("Li2S"), "chgnet", protocol, seed=1, out_path=path, progress=False, device="cpu"
    )
    assert summary["completed"] and summary["calculator_model"] == "0.3.0"
    trajectory = read_trajectory(path)
    assert trajectory.n_frames == protocol.n_production_steps == 5
    assert np.isfinite(trajectory.energy_eV).all() and np.isfinite(trajectory.forces_eV_A).all()
    # Li2S is bound: CHGNet's energy is negative, a few eV per atom, and the forces are moderate at 800 K.
    assert -6.0 < trajectory.energy_eV.mean() / trajectory.n_atoms < -2.0
    assert np.abs(trajectory.forces_eV_A).max() < 10.0
