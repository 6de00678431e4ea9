"""The one MD loop: every engine's runs go through ``run_md``.

Per replica, the driver owns the schedule (ramp, then production), the instability checks and their
cadence, the frames written, the checkpoints and their cadence, preemption and the run summary; the
engine (``mlff.md.engine``) only advances the live replicas by one step at a time. A replica that
finishes or becomes unstable leaves the engine (``Engine.drop``); the others go on.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from analysis.stability import FUSION_DISTANCE_A
from mlff import preemption
from mlff.md.checkpoint import MDCheckpoint, read_md_checkpoint, run_identity, save_md_checkpoint
from mlff.md.engine import Engine, Observation
from mlff.md.protocol import (
    CHECK_EVERY_STEPS,
    CHECKPOINT_EVERY_STEPS,
    DEFAULT_MAX_TEMPERATURE_FACTOR,
    MDProtocol,
    instability,
    run_summary,
    set_maxwell_boltzmann_velocities,
    trajectory_metadata,
)
from mlff.trajectory import TrajectoryWriter


@dataclass
class ReplicaRecord:
    """What the driver has recorded of one replica so far."""

    n_frames: int = 0
    reason: str | None = None  # why it stopped early (protocol.INSTABILITIES)
    stop_step: int | None = None  # the step it finished or stopped at
    temperature_sum_K: float = 0.0  # over the production steps that passed the checks
    n_temperatures: int = 0


def run_md(
    engine: Engine,
    protocols: list[MDProtocol],
    seeds: list[int],
    out_paths: list[str | os.PathLike],
    *,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every_steps: int = CHECKPOINT_EVERY_STEPS,
    fusion_distance_A: float = FUSION_DISTANCE_A,
    max_temperature_K: float | None = None,
    check_every_steps: int = CHECK_EVERY_STEPS,
    record_forces: bool = False,
    metadata: dict | None = None,
    progress: bool = True,
) -> list[dict]:
    """Run replica ``r`` with ``protocols[r]`` from ``engine.atoms`` (Maxwell–Boltzmann velocities at
    its ramp's start drawn from ``np.random.default_rng(seeds[r])``), writing ``out_paths[r]``.

    Frames are written every ``save_every_steps`` production steps (the first after
    ``save_every_steps`` steps), with ``step`` and ``time_fs`` counted from the start of production,
    energies and temperatures (and forces with ``record_forces``); ``metadata`` is added to each
    file's. Non-finite numbers are checked every step, atom fusion (a distance below
    ``fusion_distance_A``) and a temperature above ``max_temperature_K`` (default 10 x each
    replica's target) at every saved frame and every ``check_every_steps`` steps; an unstable
    replica stops there, and its unstable frame is never written. An engine that
    ``defers_observations`` is read only at those steps, at a replica's last step and before a
    checkpoint, step by step, so a replica still stops at its first non-finite step.

    With ``checkpoint_path``, every replica's state is saved every ``checkpoint_every_steps``
    steps and when ``mlff.preemption`` asks to stop, which then raises ``Preempted``; a run whose
    checkpoint exists resumes from it, truncating the trajectories to the frames it had written,
    and continues as if never stopped.

    Returns one summary per replica (``protocol.run_summary``): n_steps_run, n_frames_written,
    completed, stopped_early_reason (None or one of ``protocol.INSTABILITIES``), collapse_time_ps
    (since the start of production, negative during the ramp; None if completed), temperature_K
    (mean over production steps; None if production never started), wall_s (of the whole run,
    over all attempts), ns_per_day (simulated time over wall_s; batched replicas share the wall time),
    seed, engine and resumed_from_step.
    """
    n_replicas = len(protocols)
    if not (n_replicas and len(seeds) == n_replicas and len(out_paths) == n_replicas):
        raise ValueError(
            f"run_md needs one seed and one out_path per protocol, got {n_replicas} protocols, "
            f"{len(seeds)} seeds, {len(out_paths)} out_paths"
        )
    if n_replicas > 1 and not engine.batched:
        raise ValueError(f"the {engine.name} engine runs one replica at a time, got {n_replicas}")
    if not 0 < fusion_distance_A < engine.max_fusion_distance_A:
        raise ValueError(f"fusion_distance_A must lie in (0, {engine.max_fusion_distance_A}), got {fusion_distance_A}")
    for name, value in (("check_every_steps", check_every_steps), ("checkpoint_every_steps", checkpoint_every_steps)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    limits_K = [max_temperature_K or DEFAULT_MAX_TEMPERATURE_FACTOR * p.temperature_K for p in protocols]
    driver = _Driver(engine, list(protocols), list(seeds), [Path(p) for p in out_paths], limits_K, fusion_distance_A,
                     check_every_steps, record_forces)
    checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
    resumed_from = driver.begin(checkpoint_path)
    fields = ["energy_eV", "temperature_K"] + (["forces_eV_A"] if record_forces else [])
    writers = [
        TrajectoryWriter(path, engine.atoms.numbers, engine.atoms.cell.array, fields, trajectory_metadata(
            protocol, seed, engine.name, engine.calculator, fusion_distance_A, limit_K, metadata,
        ), append=resumed_from is not None)
        for path, protocol, seed, limit_K in zip(driver.out_paths, protocols, seeds, limits_K)
    ]
    description = f"MD {protocols[0].temperature_K:g} K" if n_replicas == 1 else f"MD x{n_replicas}"
    bar = tqdm(total=max(p.n_steps for p in protocols), initial=driver.step, disable=not progress, unit="step",
               desc=f"{description} ({engine.name})")
    try:
        for writer, record in zip(writers, driver.records):
            if resumed_from is not None:
                writer.truncate(record.n_frames)
        while driver.live:
            driver.advance(writers, bar)
            if checkpoint_path is not None and (preemption.requested() or driver.step % checkpoint_every_steps == 0):
                driver.read_unread(bar)
                for writer in writers:
                    writer.flush()
                driver.save(checkpoint_path)
                if preemption.requested():
                    raise preemption.Preempted(str(checkpoint_path))
    finally:
        bar.close()
        engine.close()
        for writer in writers:
            writer.close()
    return driver.summaries(resumed_from)


class _Driver:
    """The state of a ``run_md`` call: the step, the live replicas and their records."""

    def __init__(self, engine: Engine, protocols: list[MDProtocol], seeds: list[int], out_paths: list[Path],
                 limits_K: list[float], fusion_distance_A: float, check_every_steps: int, record_forces: bool):
        self.engine, self.protocols, self.seeds, self.out_paths = engine, protocols, seeds, out_paths
        self.limits_K, self.fusion_distance_A = limits_K, fusion_distance_A
        self.check_every_steps, self.record_forces = check_every_steps, record_forces
        self.identity = run_identity(engine.name, protocols, seeds, engine.atoms.numbers)
        self.step, self.live, self.wall_start_s = 0, list(range(len(protocols))), time.perf_counter()
        self.records = [ReplicaRecord() for _ in protocols]
        self.unread: list[tuple[int, Observation]] = []  # (step, what the engine observed), not read yet

    def begin(self, checkpoint_path: Path | None) -> int | None:
        """Start the engine afresh, or from the checkpoint when there is one; returns the step resumed from."""
        if checkpoint_path is None or not checkpoint_path.exists():
            momenta = []
            for protocol, seed in zip(self.protocols, self.seeds):
                replica = self.engine.atoms.copy()
                set_maxwell_boltzmann_velocities(replica, protocol.ramp_start_K, np.random.default_rng(seed))
                momenta.append(replica.get_momenta())
            self.engine.start(self.protocols, momenta)
            return None
        saved = read_md_checkpoint(checkpoint_path, self.identity)
        self.step, self.live = saved.step, list(saved.live)
        self.records = [ReplicaRecord(**record) for record in saved.records]
        self.wall_start_s -= saved.wall_s
        if self.live:  # a checkpoint written after the last step has none
            self.engine.restore([self.protocols[r] for r in self.live], saved.engine_state)
        return saved.step

    def save(self, checkpoint_path: Path) -> None:
        save_md_checkpoint(checkpoint_path, self.identity, MDCheckpoint(
            step=self.step, live=list(self.live), records=[dataclasses.asdict(r) for r in self.records],
            wall_s=time.perf_counter() - self.wall_start_s, engine_state=self.engine.state() if self.live else {},
        ))

    def advance(self, writers: list[TrajectoryWriter], bar: tqdm) -> None:
        """One step of every live replica. At an event (a check, a frame, a replica's last step), or at every
        step unless the engine defers its observations, the driver reads them: the checks, the frames, and
        the replicas that finish or stop leave."""
        self.step += 1
        step, live = self.step, self.live
        protocols = [self.protocols[r] for r in live]
        self.unread.append((step, self.engine.advance([protocol.ramp_target_K(step) for protocol in protocols])))
        bar.update()
        production_step = [step - protocol.n_ramp_steps for protocol in protocols]  # [n_live]
        saving = [n > 0 and n % protocol.save_every_steps == 0 for n, protocol in zip(production_step, protocols)]
        check = any(saving) or step % self.check_every_steps == 0
        if self.engine.defers_observations and not check and step < min(protocol.n_steps for protocol in protocols):
            return
        reasons, seen = self._read(check, bar)
        if any(save and reason is None for save, reason in zip(saving, reasons)):
            self._write(writers, seen, saving, reasons, production_step)
        keep = []
        for slot, (replica, protocol) in enumerate(zip(live, protocols)):
            if reasons[slot] is None and step < protocol.n_steps:
                keep.append(slot)
            elif reasons[slot] is None:
                self.records[replica].stop_step = step
        self._keep(keep)

    def read_unread(self, bar: tqdm) -> None:
        """Read the observations the engine deferred (before a checkpoint); the replicas that stopped leave."""
        if self.unread:
            reasons, _ = self._read(False, bar)
            self._keep([slot for slot, reason in enumerate(reasons) if reason is None])

    def _keep(self, keep: list[int]) -> None:
        if len(keep) < len(self.live):
            self.live = [self.live[slot] for slot in keep]
            if keep:
                self.engine.drop(keep)

    def _read(self, check: bool, bar: tqdm) -> tuple[list[str | None], Observation]:
        """Read the unread observations step by step: a replica stops at its first non-finite step, or, with
        ``check``, at the last step if it is unstable there (``protocol.instability``); the production
        temperatures of the steps before add up. Returns each live slot's reason to stop (None: it goes
        on) and the last step's observation."""
        reasons: list[str | None] = [None] * len(self.live)
        steps, observations = zip(*self.unread)
        self.unread = []
        shortest_A = self.engine.shortest_pair_A(self.fusion_distance_A) if check else None
        for step, seen in zip(steps, Observation.on_host(list(observations))):
            checked = check and step == self.step
            if checked:
                bar.set_postfix(T_K=f"{sum(seen.temperature_K) / len(seen.temperature_K):.0f}", refresh=False)
            for slot, replica in enumerate(self.live):
                if reasons[slot] is not None:
                    continue
                if checked:
                    reasons[slot] = instability(seen.finite[slot], shortest_A[slot], seen.temperature_K[slot],
                                                self.fusion_distance_A, self.limits_K[replica])
                elif not seen.finite[slot]:
                    reasons[slot] = "non_finite"
                record = self.records[replica]
                if reasons[slot] is not None:
                    record.reason, record.stop_step = reasons[slot], step
                elif step > self.protocols[replica].n_ramp_steps:
                    record.temperature_sum_K += seen.temperature_K[slot]
                    record.n_temperatures += 1
        return reasons, seen

    def _write(self, writers, seen: Observation, saving: list[bool], reasons: list, production_step: list[int]) -> None:
        positions_A, forces_eV_A = self.engine.frames(self.record_forces)
        for slot, replica in enumerate(self.live):
            if not saving[slot] or reasons[slot] is not None:
                continue
            writers[replica].append(
                step=production_step[slot],
                time_fs=production_step[slot] * self.protocols[replica].timestep_fs,
                positions_A=positions_A[slot],
                energy_eV=seen.energy_eV[slot],
                forces_eV_A=None if forces_eV_A is None else forces_eV_A[slot],
                temperature_K=seen.temperature_K[slot],
            )
            self.records[replica].n_frames += 1

    def summaries(self, resumed_from: int | None) -> list[dict]:
        wall_s = time.perf_counter() - self.wall_start_s
        return [
            run_summary(
                protocol, seed, self.engine.name, n_steps_run=record.stop_step, n_frames=record.n_frames,
                reason=record.reason, wall_s=wall_s, resumed_from_step=resumed_from,
                mean_temperature_K=record.temperature_sum_K / record.n_temperatures if record.n_temperatures else None,
            )
            for protocol, seed, record in zip(self.protocols, self.seeds, self.records)
        ]
