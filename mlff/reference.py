"""Reference trajectories (the "AIMD" data the force fields learn from), stored as ``.frames`` files.

Two ways in: ``import_reference`` converts existing data (extxyz, ASE .traj, VASP vasprun.xml or
XDATCAR); ``generate_reference`` runs the MD protocol with a reference ASE calculator (CHGNet is
the project's stand-in for DFT) and records energies and forces.
"""

from __future__ import annotations

import os
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

from mlff.md.ase_engine import AseEngine
from mlff.md.driver import run_md
from mlff.md.protocol import MDProtocol
from mlff.models.base import resolve_device
from mlff.pretrained import CHGNET_MODEL, Pretrained
from mlff.trajectory import Trajectory, wrap_positions_A, write_trajectory
from records.provenance import sha256_file

CELL_TOLERANCE_A = 1e-6  # largest change of a cell-vector component still counted as a fixed cell
SUPPORTED_FORMATS = "extended XYZ (*.xyz, *.extxyz), ASE trajectory (*.traj), VASP vasprun*.xml, VASP XDATCAR*"


def _source_format(path: Path) -> str:
    name, suffix = path.name.lower(), path.suffix.lower()
    if suffix in (".xyz", ".extxyz"):
        return "extxyz"
    if suffix == ".traj":
        return "traj"
    if name.startswith("vasprun") and suffix == ".xml":
        return "vasprun"
    if name.startswith("xdatcar"):
        return "xdatcar"
    raise ValueError(f"{path}: unknown reference-data format; supported: {SUPPORTED_FORMATS}")


def _frames_from_ase(path: Path, source_format: str) -> tuple[list[Atoms], list[float] | None, list[np.ndarray] | None]:
    ase_format = {"extxyz": "extxyz", "traj": "traj", "xdatcar": "vasp-xdatcar"}[source_format]
    try:
        frames = ase.io.read(path, index=":", format=ase_format)
    except Exception as err:
        raise ValueError(f"{path}: cannot read as {source_format} ({err})") from err
    results = [frame.calc.results if frame.calc is not None else {} for frame in frames]
    has_energies = [("energy" in result) for result in results]
    has_forces = [("forces" in result) for result in results]
    for label, present in (("energies", has_energies), ("forces", has_forces)):
        if any(present) and not all(present):
            raise ValueError(f"{path}: {label} are given for only {sum(present)} of {len(frames)} frames")
    energies = [float(result["energy"]) for result in results] if all(has_energies) else None
    forces = [np.asarray(result["forces"]) for result in results] if all(has_forces) else None
    return frames, energies, forces


def _frames_from_vasprun(path: Path) -> tuple[list[Atoms], list[float] | None, list[np.ndarray] | None, float | None]:
    """Frames, free energies (``e_fr_energy``, the energy VASP's forces are derivatives of),
    forces, and the MD timestep (POTIM when IBRION = 0)."""
    from pymatgen.io.vasp.outputs import Vasprun

    try:
        run = Vasprun(path, parse_dos=False, parse_eigen=False, parse_potcar_file=False)
    except Exception as err:
        raise ValueError(f"{path}: cannot read as vasprun.xml ({err})") from err
    steps = [step for step in run.ionic_steps if step["structure"] is not None]
    if not steps:
        raise ValueError(f"{path}: vasprun.xml holds no ionic steps with structures")
    frames = [
        Atoms(
            numbers=[site.specie.Z for site in step["structure"]],
            cell=step["structure"].lattice.matrix,
            positions=step["structure"].cart_coords,
            pbc=True,
        )
        for step in steps
    ]
    energies = [float(step["e_fr_energy"]) for step in steps] if all("e_fr_energy" in s for s in steps) else None
    forces = [np.asarray(step["forces"]) for step in steps] if all("forces" in s for s in steps) else None
    is_md = run.parameters.get("IBRION") == 0
    timestep_fs = float(run.parameters["POTIM"]) if is_md and "POTIM" in run.parameters else None
    return frames, energies, forces, timestep_fs


def read_reference(source_path: str | os.PathLike, timestep_fs: float | None = None) -> Trajectory:
    """All frames of a reference trajectory file, positions wrapped into the cell as in a ``.frames`` file.

    The format follows the file name (see ``SUPPORTED_FORMATS``). ``timestep_fs`` is the time
    between consecutive frames; when None it is taken from the source (vasprun.xml of an MD run:
    POTIM), and a source without one raises. The cell must be the same in every frame. Energies
    and forces are kept when every frame has them (XDATCAR has neither: positions only).
    """
    path = Path(source_path)
    source_format = _source_format(path)
    if not path.is_file():
        raise ValueError(f"{path}: reference-data file does not exist")
    if source_format == "vasprun":
        frames, energies, forces, source_timestep_fs = _frames_from_vasprun(path)
    else:
        frames, energies, forces = _frames_from_ase(path, source_format)
        source_timestep_fs = None
    if not frames:
        raise ValueError(f"{path}: no frames")
    if timestep_fs is None:
        timestep_fs = source_timestep_fs
        if timestep_fs is None:
            raise ValueError(f"{path}: no timestep in the file; pass timestep_fs (time between frames, in fs)")
    if not timestep_fs > 0:
        raise ValueError(f"{path}: timestep_fs must be positive, got {timestep_fs}")

    first = frames[0]
    if first.cell.rank < 3:
        raise ValueError(f"{path}: frames have no three-dimensional periodic cell")
    for index, frame in enumerate(frames):
        if not np.array_equal(frame.numbers, first.numbers):
            raise ValueError(f"{path}: frame {index} holds different atoms than frame 0")
        if np.abs(frame.cell.array - first.cell.array).max() > CELL_TOLERANCE_A:
            raise ValueError(f"{path}: the cell changes at frame {index}; a fixed cell (NVT) is required")

    steps = np.arange(len(frames))  # [n_frames]
    return Trajectory(
        numbers=first.numbers,
        cell_A=first.cell.array,
        positions_A=wrap_positions_A(np.stack([frame.positions for frame in frames]), first.cell.array),
        step=steps,
        time_fs=steps * float(timestep_fs),
        energy_eV=None if energies is None else np.asarray(energies),
        forces_eV_A=None if forces is None else np.stack(forces),
        metadata={
            "source": path.name,
            "source_sha256": sha256_file(path),
            "source_format": source_format,
            "timestep_fs": float(timestep_fs),
        },
    )


def check_reference_file(source_path: str | os.PathLike) -> None:
    """A cheap look at a reference file before anything runs: it exists, its format is known, and for the
    formats ASE reads, its first frame reads as a periodic structure. Raises ValueError saying what is wrong."""
    path = Path(source_path)
    source_format = _source_format(path)
    if not path.is_file():
        raise ValueError(f"{path}: reference-data file does not exist")
    if source_format == "vasprun":  # read whole only when imported
        return
    ase_format = {"extxyz": "extxyz", "traj": "traj", "xdatcar": "vasp-xdatcar"}[source_format]
    try:
        first = ase.io.read(path, index=0, format=ase_format)
    except Exception as err:
        raise ValueError(f"{path}: cannot read as {source_format} ({err})") from err
    if first.cell.rank < 3:
        raise ValueError(f"{path}: frames have no three-dimensional periodic cell")


def import_reference(
    source_path: str | os.PathLike, out_path: str | os.PathLike, timestep_fs: float | None = None
) -> dict:
    """Convert all frames of a reference trajectory (``read_reference``) into a ``.frames`` file at ``out_path``.

    Returns n_frames, n_atoms, formula, has_energies, has_forces, timestep_fs, source_format, out_path.
    """
    trajectory = read_reference(source_path, timestep_fs)
    write_trajectory(out_path, trajectory)
    return {
        "n_frames": trajectory.n_frames,
        "n_atoms": trajectory.n_atoms,
        "formula": Atoms(numbers=trajectory.numbers).get_chemical_formula(),
        "has_energies": trajectory.energy_eV is not None,
        "has_forces": trajectory.forces_eV_A is not None,
        "timestep_fs": trajectory.metadata["timestep_fs"],
        "source_format": trajectory.metadata["source_format"],
        "out_path": str(out_path),
    }


def generate_reference(
    atoms: Atoms,
    calculator_name: str,
    protocol: MDProtocol,
    seed: int,
    out_path: str | os.PathLike,
    progress: bool = True,
    device: str | None = None,
    checkpoint_path: str | os.PathLike | None = None,
) -> dict:
    """Run the MD protocol with reference calculator ``calculator_name`` (``mlff.pretrained``: ``chgnet``,
    ``sevennet-0`` or an ASE calculator class, built without arguments) on ``device`` (default: CUDA
    when available, else CPU), recording energies and forces in ``out_path``, resumable from
    ``checkpoint_path`` (``mlff.md.driver.run_md``). Returns the run's summary plus calculator and
    calculator_version."""
    model = Pretrained(calculator_name)
    calculator = model.calculator(str(resolve_device(device)))
    provenance = {"calculator": calculator_name, "calculator_version": model.version()}
    if calculator_name == "chgnet":
        provenance["calculator_model"] = CHGNET_MODEL
    (summary,) = run_md(
        AseEngine(atoms, calculator), [protocol], [seed], [out_path], record_forces=True, progress=progress,
        metadata=provenance, checkpoint_path=checkpoint_path,
    )
    return {**summary, **provenance}
