"""Molecular dynamics with the paper's protocol, through one driver loop and interchangeable engines.

- ``protocol``: the MD protocol, starting velocities, instability checks, run summaries, units.
- ``driver``: ``run_md``, the one loop (schedule, checks, frames, checkpoints, preemption, summaries).
- ``checkpoint``: the one checkpoint format every engine's runs are saved in.
- ``engine``: the small interface an engine implements, and the registry of engines.
- ``<name>_engine``: the engines, one file each: ``ase`` (any ASE calculator), ``torch`` (many
  replicas in batched model calls) and ``lammps`` (LAMMPS through ``fix external``).
- what the torch engine is built from: ``neighbours`` (Verlet-skin neighbour lists), ``thermostat``
  (batched Nosé–Hoover chains) and ``autobatch`` (how many replicas share a model call on a GPU).

To add an engine ``<name>``:

1. Write ``mlff/md/<name>_engine.py`` with a subclass of ``engine.Engine`` (its ``name`` is
   ``<name>``) and ``ENGINE = <the class>``. The registry finds engines by that file name alone, so
   only engines' modules end in ``_engine``.
2. Implement ``Engine``'s abstract methods: ``advance`` takes the steps ``Engine`` documents (velocity
   Verlet rescaled to the ramp's target, then Nosé–Hoover-chain NVT as ASE's ``NoseHooverChainNVT``),
   and ``state``/``restore`` let the driver's checkpoints resume a run exactly. An engine that takes
   several replicas sets ``batched`` and implements ``drop``.
3. Test it in ``tests/mlff/md/test_<name>_engine.py`` against the ASE engine on the same model and seed,
   as ``test_torch_engine.py`` and ``test_lammps_engine.py`` do. A spec's ``md.engine`` then accepts it.
"""
