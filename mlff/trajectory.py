"""The trajectory file every stage writes and reads: reference data, MLFF-MD output, analysis input.

Layout of a ``.frames`` file::

    8 bytes   magic b"MLFFTRJ1"
    8 bytes   little-endian uint64: length of the JSON header in bytes (padded to a multiple of 8)
    header    JSON: numbers, cell_A, pbc, fields, metadata
    records   one fixed-size record per frame (numpy structured dtype built from ``fields``)

Positions are always stored wrapped into the cell (fractional coordinates in [0, 1)); analysis
unwraps them explicitly. The cell is fixed for the whole file (NVT). Appending a frame is one
``write`` of one record, so a killed writer leaves at most one partial record at the end, which
``read_trajectory`` reports instead of guessing.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from records.units import FS_PER_PS
from records.errors import CampaignError

MAGIC = b"MLFFTRJ1"
SUFFIX = ".frames"
OPTIONAL_FIELDS = ("energy_eV", "forces_eV_A", "temperature_K")
HEADER_KEYS = ("numbers", "cell_A", "fields", "metadata")
MAX_ATOMIC_NUMBER = 118  # the heaviest element; model embeddings (mlff.graph) have one row per number up to it


class TrajectoryError(CampaignError, ValueError):
    """A trajectory file is missing, corrupt, truncated or inconsistent."""


@dataclass(frozen=True)
class Trajectory:
    """Frames of one fixed-cell system. Optional arrays are None when not recorded."""

    numbers: np.ndarray  # [n_atoms] atomic numbers
    cell_A: np.ndarray  # [3, 3] rows are lattice vectors
    positions_A: np.ndarray  # [n_frames, n_atoms, 3] wrapped into the cell
    step: np.ndarray  # [n_frames] MD step index
    time_fs: np.ndarray  # [n_frames]
    energy_eV: np.ndarray | None = None  # [n_frames] potential energy
    forces_eV_A: np.ndarray | None = None  # [n_frames, n_atoms, 3]
    temperature_K: np.ndarray | None = None  # [n_frames] instantaneous kinetic temperature
    metadata: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.positions_A)

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)

    def production(self, discard_ps: float) -> tuple[Trajectory, int]:
        """The frames after the first ``discard_ps`` (the analysed part of a run), without non-finite
        frames; also how many non-finite frames were left out."""
        kept = self.select(self.time_fs >= discard_ps * FS_PER_PS)
        finite = np.isfinite(kept.positions_A).all(axis=(1, 2))
        return kept.select(np.flatnonzero(finite)), int((~finite).sum())

    def finite(self) -> Trajectory:
        """The frames whose positions are all finite."""
        return self.select(np.flatnonzero(np.isfinite(self.positions_A).all(axis=(1, 2))))

    def select(self, frames: np.ndarray | slice) -> Trajectory:
        """A new Trajectory holding only ``frames`` (an index array or a slice)."""
        def pick(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[frames]

        return Trajectory(
            numbers=self.numbers,
            cell_A=self.cell_A,
            positions_A=self.positions_A[frames],
            step=self.step[frames],
            time_fs=self.time_fs[frames],
            energy_eV=pick(self.energy_eV),
            forces_eV_A=pick(self.forces_eV_A),
            temperature_K=pick(self.temperature_K),
            metadata=self.metadata,
        )


def _record_dtype(n_atoms: int, fields: list[str]) -> np.dtype:
    layout = [("step", "<i8"), ("time_fs", "<f8"), ("positions_A", "<f8", (n_atoms, 3))]
    shapes = {"energy_eV": (), "forces_eV_A": (n_atoms, 3), "temperature_K": ()}
    for name in fields:
        if name not in shapes:
            raise TrajectoryError(f"unknown trajectory field {name!r}; expected some of {OPTIONAL_FIELDS}")
        layout.append((name, "<f8", shapes[name]) if shapes[name] else (name, "<f8"))
    return np.dtype(layout)


def wrap_positions_A(positions_A: np.ndarray, cell_A: np.ndarray) -> np.ndarray:
    """Positions [..., n_atoms, 3] mapped into the cell: fractional coordinates in [0, 1)."""
    fractional = positions_A @ np.linalg.inv(cell_A)
    fractional -= np.floor(fractional)
    fractional[fractional >= 1.0] = 0.0  # -1e-17 wraps to exactly 1.0 in floating point
    return fractional @ cell_A


class TrajectoryWriter:
    """Append frames to a ``.frames`` file. Use as a context manager.

    ``append=True`` continues an existing file (after a restart): the header must match, and a
    partial last record left by a killed writer is cut off first.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        numbers: np.ndarray,
        cell_A: np.ndarray,
        fields: list[str],
        metadata: dict | None = None,
        append: bool = False,
    ):
        self.path = Path(path)
        self.numbers = np.asarray(numbers, dtype=np.int64)
        self.cell_A = np.asarray(cell_A, dtype=np.float64)
        self.fields = list(fields)
        self._dtype = _record_dtype(len(self.numbers), self.fields)
        header = {
            "numbers": self.numbers.tolist(),
            "cell_A": self.cell_A.tolist(),
            "fields": self.fields,
            "metadata": metadata or {},
        }
        if append and self.path.exists():
            existing = _read_header(self.path)
            if existing["numbers"] != header["numbers"] or existing["fields"] != header["fields"]:
                raise TrajectoryError(f"{self.path}: cannot append, the existing file holds a different system")
            offset = existing["_data_offset"]
            n_complete = (self.path.stat().st_size - offset) // self._dtype.itemsize
            self._file = open(self.path, "r+b")
            self._file.truncate(offset + n_complete * self._dtype.itemsize)
            self._file.seek(0, os.SEEK_END)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "wb")
            blob = json.dumps(header).encode()
            blob += b" " * (-len(blob) % 8)
            self._file.write(MAGIC + struct.pack("<Q", len(blob)) + blob)

    def append(
        self,
        step: int,
        time_fs: float,
        positions_A: np.ndarray,
        energy_eV: float | None = None,
        forces_eV_A: np.ndarray | None = None,
        temperature_K: float | None = None,
    ) -> None:
        record = np.zeros((), dtype=self._dtype)
        record["step"] = step
        record["time_fs"] = time_fs
        record["positions_A"] = wrap_positions_A(np.asarray(positions_A, dtype=np.float64), self.cell_A)
        given = {"energy_eV": energy_eV, "forces_eV_A": forces_eV_A, "temperature_K": temperature_K}
        for name in self.fields:
            if given[name] is None:
                raise TrajectoryError(f"{self.path}: field {name!r} is recorded in this file but was not given")
            record[name] = given[name]
        self._file.write(record.tobytes())

    def truncate(self, n_frames: int) -> None:
        """Keep only the first ``n_frames`` frames: a run resumed from a checkpoint drops frames written after it."""
        self._file.flush()
        offset = _read_header(self.path)["_data_offset"]
        n_present = (self._file.seek(0, os.SEEK_END) - offset) // self._dtype.itemsize
        if not 0 <= n_frames <= n_present:
            raise TrajectoryError(f"{self.path}: cannot keep {n_frames} frames, the file holds {n_present}")
        self._file.truncate(offset + n_frames * self._dtype.itemsize)
        self._file.seek(0, os.SEEK_END)

    def flush(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_header(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            start = fh.read(16)
            if len(start) < 16 or start[:8] != MAGIC:
                raise TrajectoryError(f"{path}: not a trajectory file (expected magic {MAGIC!r} at the start)")
            (length,) = struct.unpack("<Q", start[8:])
            n_after_start = os.fstat(fh.fileno()).st_size - len(start)
            if length > n_after_start:  # a corrupt length is not a size to allocate
                raise TrajectoryError(f"{path}: header truncated, or its length corrupt: it claims {length} bytes, "
                                      f"and the file holds {n_after_start} after its first 16")
            blob = fh.read(length)
    except FileNotFoundError as err:
        raise TrajectoryError(f"{path}: trajectory file does not exist") from err
    try:
        header = json.loads(blob)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TrajectoryError(f"{path}: header is not valid JSON ({err})") from err
    missing = [key for key in HEADER_KEYS if not isinstance(header, dict) or key not in header]
    if missing:
        raise TrajectoryError(f"{path}: the header lacks {missing}; a .frames header holds {list(HEADER_KEYS)}")
    _check_header(path, header)
    header["_data_offset"] = 16 + length
    return header


def _check_header(path: Path, header: dict) -> None:
    """Raise TrajectoryError naming ``path`` unless each of the header's HEADER_KEYS has its kind of value."""
    numbers, cell_A, fields = header["numbers"], header["cell_A"], header["fields"]
    if not (isinstance(numbers, list) and numbers and all(type(n) is int and 0 < n <= MAX_ATOMIC_NUMBER
                                                          for n in numbers)):
        raise TrajectoryError(f"{path}: the header's numbers must be a non-empty list of atomic numbers "
                              f"(1 to {MAX_ATOMIC_NUMBER})")
    try:
        cell = np.asarray(cell_A, dtype=np.float64)
    except (TypeError, ValueError):
        cell = None
    if cell is None or cell.shape != (3, 3) or not np.isfinite(cell).all():
        raise TrajectoryError(f"{path}: the header's cell_A must be 3 x 3 finite numbers (lattice vectors, Å)")
    if not (isinstance(fields, list) and all(isinstance(name, str) for name in fields)):
        raise TrajectoryError(f"{path}: the header's fields must be a list of names, some of {OPTIONAL_FIELDS}")
    unknown = [name for name in fields if name not in OPTIONAL_FIELDS]
    if unknown:
        raise TrajectoryError(f"{path}: unknown trajectory fields {unknown} in the header; expected some of "
                              f"{OPTIONAL_FIELDS}")
    if not isinstance(header["metadata"], dict):
        raise TrajectoryError(f"{path}: the header's metadata must be a JSON object")


def read_system(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Atomic numbers [n_atoms] and cell_A [3, 3] of a ``.frames`` file, from its header alone."""
    header = _read_header(Path(path))
    return np.asarray(header["numbers"], dtype=np.int64), np.asarray(header["cell_A"], dtype=np.float64)


def read_trajectory(path: str | os.PathLike) -> Trajectory:
    """Read a ``.frames`` file.

    A file whose size is not a whole number of frames was cut short (a killed writer or a full
    disk): that raises TrajectoryError naming the file.
    """
    path = Path(path)
    header = _read_header(path)
    numbers = np.asarray(header["numbers"], dtype=np.int64)
    dtype = _record_dtype(len(numbers), header["fields"])
    n_bytes = path.stat().st_size - header["_data_offset"]
    n_frames, remainder = divmod(n_bytes, dtype.itemsize)
    if remainder:
        raise TrajectoryError(
            f"{path}: truncated — {n_frames} complete frames followed by {remainder} bytes of a partial "
            f"frame ({dtype.itemsize} bytes per frame)"
        )
    records = np.fromfile(path, dtype=dtype, count=n_frames, offset=header["_data_offset"])
    optional = {name: records[name] if name in header["fields"] else None for name in OPTIONAL_FIELDS}
    return Trajectory(
        numbers=numbers,
        cell_A=np.asarray(header["cell_A"], dtype=np.float64),
        positions_A=records["positions_A"],
        step=records["step"],
        time_fs=records["time_fs"],
        metadata=header["metadata"],
        **optional,
    )


def write_trajectory(path: str | os.PathLike, trajectory: Trajectory) -> None:
    """Write a whole Trajectory to ``path`` (used when importing reference data)."""
    fields = [name for name in OPTIONAL_FIELDS if getattr(trajectory, name) is not None]
    with TrajectoryWriter(path, trajectory.numbers, trajectory.cell_A, fields, trajectory.metadata) as writer:
        for i in range(trajectory.n_frames):
            writer.append(
                step=int(trajectory.step[i]),
                time_fs=float(trajectory.time_fs[i]),
                positions_A=trajectory.positions_A[i],
                **{name: getattr(trajectory, name)[i] for name in fields},
            )
