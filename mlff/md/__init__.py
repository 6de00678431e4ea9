"""Molecular dynamics with the paper's protocol, through one driver loop and interchangeable engines.

- ``protocol``: the MD protocol, starting velocities, instability checks, run summaries, units.
- ``driver``: ``run_md``, the one loop (schedule, checks, frames, checkpoints, preemption, summaries).
- ``checkpoint``: the one checkpoint format every engine's runs are saved in.
- ``engine``: the small interface an engine implements, and the registry of engines.
- ``<name>_engine``: the engines, one file each: ``ase`` (any ASE calculator), ``torch`` (many
  replicas in batched model calls) and ``lammps`` (LAMMPS through ``fix external``).
"""
