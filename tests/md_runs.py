"""One run, or one batch, through each MD engine and the driver, as the tests start them."""

from __future__ import annotations

from mlff.md.ase_engine import AseEngine
from mlff.md.driver import run_md
from mlff.md.lammps_engine import LammpsEngine
from mlff.md.torch_engine import DEFAULT_NEIGHBOUR_SKIN_A, TorchEngine


def ase_md(atoms, calculator, protocol, seed, out_path, **options) -> dict:
    """The summary of one run of the ASE engine; ``options`` go to ``run_md``."""
    (summary,) = run_md(AseEngine(atoms, calculator), [protocol], [seed], [out_path], **options)
    return summary


def lammps_md(atoms, model, protocol, seed, out_path, **options) -> dict:
    """The summary of one run of the LAMMPS engine; ``options`` go to ``run_md``."""
    (summary,) = run_md(LammpsEngine(atoms, model), [protocol], [seed], [out_path], **options)
    return summary


def torch_md(model, atoms, protocols, seeds, out_paths, neighbour_skin_A=DEFAULT_NEIGHBOUR_SKIN_A,
             replicas_per_call=None, sync_free=None, **options) -> list[dict]:
    """The summaries of a batch of the torch engine; ``options`` go to ``run_md``."""
    engine = TorchEngine(model, atoms, neighbour_skin_A=neighbour_skin_A, replicas_per_call=replicas_per_call,
                         sync_free=sync_free)
    return run_md(engine, protocols, seeds, out_paths, **options)
