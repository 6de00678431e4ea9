"""Expand a campaign spec into tasks: a pure function, no database, no files written.

A task is one unit of work (one firework). Its ``digest`` hashes its own settings together with its
parents' digests, so a task's identity changes exactly when anything it depends on changes. Submit
compares digests with what the store already holds and adds only tasks that are new. Paths in a task's
inputs are relative to the campaign's folder (the spec's), so digests do not depend on where the
campaign lies; a task's files go to ``<workdir>/<key>/<digest[:12]>/``.

Stages and keys (temperatures written like ``800K``):

- ``reference/<material>/<T>/run<i>``: generate (or import) one reference trajectory
- ``train/<model>``: train on the training material's reference frames (a pretrained model: fine-tune;
  none for one taken zero-shot)
- ``predict/<model>/<material>``: energy and force errors on held-out reference frames
- ``md/<model>/<material>/<T>/rep<r>``: one MLFF-MD run (``md.batch: none``)
- ``md/<model>/<material>/<T>/batch`` (``md.batch: repetitions``) or ``md/<model>/<material>/batch``
  (``md.batch: all``): runs integrated together by the torch engine, one trajectory per run; a
  pretrained model's runs are lone runs by the ASE engine
- ``analyze/<source>/<material>``: RDF, stability, diffusion and Arrhenius over all runs of one model
  (or of the reference itself, source ``reference``) on one material
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from campaign.spec import CampaignSpec, PretrainedSpec
from mlff import BEST_CHECKPOINT
from mlff.structures import BUILTIN_STRUCTURES
from records.results import REFERENCE_SOURCE
from workflows.build import STAGES, Task
from workflows.firetasks import FIRETASKS

SECONDS_PER_MINUTE = 60.0


def derive_seed(base_seed: int, label: str) -> int:
    """A stable 31-bit seed for ``label``, derived from the campaign's base seed."""
    return int(hashlib.sha256(f"{base_seed}:{label}".encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def temperature_label(temperature_K: float) -> str:
    return f"{temperature_K:g}K"


class _Planner:
    """Makes the tasks. Paths are stored relative to the campaign's folder (the spec's), as the user wrote
    them, so a campaign can be moved; ``absolute`` stores them absolute under ``base_dir``, as release
    0.1.0 did, which only the migration of its stores needs (campaign/submission.py)."""

    def __init__(self, spec: CampaignSpec, base_dir: Path, absolute: bool = False):
        self.spec = spec
        self.base_dir = base_dir
        self.absolute = absolute
        self.workdir = Path(self.resolve(spec.campaign.workdir))
        self.tasks: dict[str, Task] = {}

    def add(self, key: str, stage: str, config: dict, parents: list[str], outputs: dict, labels: dict) -> Task:
        """Add a task: ``config`` decides its digest; ``outputs`` name files under its own directory."""
        parent_digests = [self.tasks[p].digest for p in parents]
        blob = json.dumps({"stage": stage, "config": config, "parents": parent_digests}, sort_keys=True)
        digest = hashlib.sha256(blob.encode()).hexdigest()
        directory = self.workdir / key / digest[:12]
        paths = {
            name: [str(directory / f) for f in filename] if isinstance(filename, list) else str(directory / filename)
            for name, filename in outputs.items()
        }
        inputs = {**config, **paths}
        FIRETASKS[stage].parse(inputs)  # the stored inputs are what the firetask will read
        task = Task(key, stage, inputs, tuple(parents), digest, labels)
        self.tasks[key] = task
        return task

    def resolve(self, path: str) -> str:
        """A path of the spec's, relative to the campaign's folder (or absolute when the user wrote it so)."""
        return str((self.base_dir / path).resolve()) if self.absolute else os.path.normpath(path)

    def structure(self, material: str) -> str:
        source = self.spec.materials[material].structure
        return source if source in BUILTIN_STRUCTURES else self.resolve(source)

    def device(self) -> str:
        return self.spec.campaign.device

    def protocol(self, temperature_K: float, ramp_ps: float, production_ps: float, save_every_steps: int) -> dict:
        md = self.spec.md
        return {
            "temperature_K": temperature_K,
            "timestep_fs": md.timestep_fs,
            "ramp_start_K": md.ramp.start_K,
            "ramp_ps": ramp_ps,
            "production_ps": production_ps,
            "save_every_steps": save_every_steps,
        }

    def references(self, material: str) -> list[Task]:
        spec = self.spec.materials[material]
        tasks = []
        if spec.generate is not None:
            gen = spec.generate
            for temperature_K in self.spec.reference_temperatures_K(material):
                for run in range(gen.runs):
                    key = f"reference/{material}/{temperature_label(temperature_K)}/run{run}"
                    config = {
                        "mode": "generate",
                        "material": material,
                        "structure": self.structure(material),
                        "calculator": gen.calculator,
                        "protocol": self.protocol(temperature_K, gen.ramp_ps, gen.production_ps, gen.save_every_steps),
                        "seed": derive_seed(self.spec.campaign.seed, key),
                        "device": self.device(),
                    }
                    labels = {"material": material, "temperature_K": temperature_K, "run": run}
                    tasks.append(self.add(key, "reference", config, [], {"out_path": "reference.frames"}, labels))
        else:
            runs_at: dict[float, int] = {}
            for entry in spec.imported:
                run = runs_at[entry.temperature_K] = runs_at.get(entry.temperature_K, -1) + 1
                key = f"reference/{material}/{temperature_label(entry.temperature_K)}/run{run}"
                config = {
                    "mode": "import",
                    "material": material,
                    "source_path": self.resolve(entry.path),
                    "temperature_K": entry.temperature_K,
                    "timestep_fs": entry.timestep_fs,
                }
                labels = {"material": material, "temperature_K": entry.temperature_K, "run": run}
                tasks.append(self.add(key, "reference", config, [], {"out_path": "reference.frames"}, labels))
        return tasks

    def split(self) -> dict:
        training = self.spec.training
        return {
            "n_train_per_run": training.n_train_per_run,
            "n_validation_per_run": training.n_validation_per_run,
            "split_seed": derive_seed(self.spec.campaign.seed, f"split/{training.material}"),
        }

    def analysis_settings(self) -> dict:
        return {"discard_ps": self.spec.md.discard_ps, **self.spec.analysis.stored()}


def _run_entry(task: Task) -> dict:
    entry = {"path": task.inputs["out_path"], "temperature_K": task.labels["temperature_K"]}
    entry.update({k: task.labels[k] for k in ("run", "repetition") if k in task.labels})
    entry["seed"] = task.inputs.get("seed")
    return entry


def _md_run_entries(task: Task) -> list[dict]:
    """One analysis entry per run of an MD task, whether it holds one run or a batch."""
    if "replicas" not in task.inputs:
        return [_run_entry(task)]
    return [
        {"path": path, "temperature_K": replica["temperature_K"], "repetition": replica["repetition"], "seed": replica["seed"]}
        for replica, path in zip(task.inputs["replicas"], task.inputs["out_paths"], strict=True)
    ]


def _md_batches(md_spec, batched: bool) -> list[tuple[str | None, list[tuple[float, int]]]]:
    """(key suffix of the batch or None for a lone run, [(temperature_K, repetition)]) per MD task; lone
    runs only unless ``batched`` (a model the torch engine can batch)."""
    runs = [(t, r) for t in md_spec.temperatures_K for r in range(md_spec.repetitions)]
    if md_spec.batch == "none" or not batched:
        return [(None, [run]) for run in runs]
    if md_spec.batch == "repetitions":
        return [(f"{temperature_label(t)}/batch", [run for run in runs if run[0] == t]) for t in md_spec.temperatures_K]
    return [("batch", runs)]


def _model(plan: _Planner, name: str, entry, training_refs: list[Task]) -> tuple[dict, list[str], str | None]:
    """A model's part of its predict and MD tasks' inputs, the tasks they wait for, and its label: a model of
    the zoo is trained; a pretrained one is fine-tuned (``fine_tune``) or taken as it is (``zero_shot``)."""
    training = plan.spec.training
    train_key = f"train/{name}"
    training_config = {
        "references": [_run_entry(t) for t in training_refs],
        **plan.split(),
        "energy_weight": training.energy_weight,
        "force_weight": training.force_weight,
        "learning_rate": training.learning_rate,
        "batch_size": training.batch_size,
        "max_epochs": training.max_epochs,
        "max_wall_s": None if training.max_wall_minutes is None else training.max_wall_minutes * SECONDS_PER_MINUTE,
        "seed": derive_seed(plan.spec.campaign.seed, train_key),
        "device": plan.device(),
    }
    parents = [t.key for t in training_refs]
    if not isinstance(entry, PretrainedSpec):
        train = plan.add(train_key, "train", {"model": name, "hparams": entry, **training_config}, parents,
                         {"out_dir": "."}, {"model": name})
        return {"checkpoint": str(Path(train.inputs["out_dir"]) / BEST_CHECKPOINT)}, [train.key], None
    pretrained = {"name": entry.pretrained, "mode": entry.mode, "options": entry.options}
    if entry.mode == "zero_shot":
        return {"pretrained": pretrained}, [], entry.label
    train = plan.add(train_key, "train", {"model": name, "pretrained": pretrained, **training_config}, parents,
                     {"out_dir": "."}, {"model": name})
    checkpoint = str(Path(train.inputs["out_dir"]) / BEST_CHECKPOINT)
    return {"pretrained": {**pretrained, "checkpoint": checkpoint}}, [train.key], entry.label


def _md_tasks(plan: _Planner, name: str, material: str, model: dict, parents: list[str]) -> list[Task]:
    """The MD tasks of one model on one material: lone runs or batches (``md.batch``), a pretrained model's
    lone runs by the ASE engine."""
    md_spec = plan.spec.md
    pretrained = "pretrained" in model
    md_settings = {
        "model": name,
        "material": material,
        **model,
        "structure": plan.structure(material),
        **({} if pretrained else {"engine": md_spec.engine, "tabulate_filters": md_spec.tabulate_filters}),
        "fusion_distance_A": plan.spec.analysis.fusion_distance_A,
        "device": plan.device(),
    }
    labels = {"model": name, "material": material}
    tasks = []
    for suffix, runs in _md_batches(md_spec, batched=not pretrained):
        replicas = []
        for temperature_K, repetition in runs:
            run_key = f"md/{name}/{material}/{temperature_label(temperature_K)}/rep{repetition}"
            protocol = plan.protocol(temperature_K, md_spec.ramp.ramp_ps, md_spec.production_ps, md_spec.save_every_steps)
            replicas.append({
                "protocol": protocol,
                "seed": derive_seed(plan.spec.campaign.seed, run_key),
                "temperature_K": temperature_K,
                "repetition": repetition,
            })
        if suffix is None:
            ((temperature_K, repetition),), (replica,) = runs, replicas
            md_config = {**md_settings, "protocol": replica["protocol"], "seed": replica["seed"]}
            run_labels = {**labels, "temperature_K": temperature_K, "repetition": repetition}
            tasks.append(plan.add(run_key, "md", md_config, parents, {"out_path": "trajectory.frames"}, run_labels))
            continue
        md_config = {**md_settings, "replicas": replicas}
        out_paths = [f"{temperature_label(t)}-rep{r}.frames" for t, r in runs]
        batch_labels = {**labels, "temperatures_K": sorted({t for t, _ in runs}), "n_runs": len(runs)}
        tasks.append(plan.add(
            f"md/{name}/{material}/{suffix}", "md", md_config, parents, {"out_paths": out_paths}, batch_labels
        ))
    return tasks


def expand(spec: CampaignSpec, base_dir: Path, absolute: bool = False) -> list[Task]:
    """All tasks of a campaign in dependency order (parents before children); ``base_dir`` is the campaign's
    folder and ``absolute`` gives release 0.1.0's absolute paths (see ``_Planner``)."""
    plan = _Planner(spec, Path(base_dir).resolve(), absolute)
    training = spec.training
    references = {material: plan.references(material) for material in spec.materials}
    training_refs = [t for t in references[training.material] if t.labels["temperature_K"] in training.temperatures_K]

    for material, refs in references.items():
        config = {
            "source": REFERENCE_SOURCE,
            "material": material,
            "runs": [_run_entry(t) for t in refs if t.labels["temperature_K"] in spec.md.temperatures_K],
            "references": [_run_entry(t) for t in refs],
            **plan.analysis_settings(),
        }
        labels = {"model": REFERENCE_SOURCE, "material": material}
        plan.add(f"analyze/{REFERENCE_SOURCE}/{material}", "analyze", config, [t.key for t in refs], {"out_dir": "."}, labels)

    for name, entry in spec.models.items():
        model, model_parents, label = _model(plan, name, entry, training_refs)
        for material, refs in references.items():
            predict_config = {
                "model": name,
                "material": material,
                **model,
                "references": [_run_entry(t) for t in refs],
                "n_frames": spec.prediction.n_frames,
                "held_out_split": plan.split() if material == training.material else None,
                "training_references": [_run_entry(t) for t in training_refs] if material == training.material else [],
                "seed": derive_seed(spec.campaign.seed, f"predict/{name}/{material}"),
                "device": plan.device(),
            }
            labels = {"model": name, "material": material}
            plan.add(f"predict/{name}/{material}", "predict", predict_config, [*model_parents, *(t.key for t in refs)],
                     {"out_dir": "."}, labels)
            md_tasks = _md_tasks(plan, name, material, model, model_parents)
            analyze_config = {
                "source": name,
                "material": material,
                "runs": [entry for t in md_tasks for entry in _md_run_entries(t)],
                "references": [_run_entry(t) for t in refs],
                **plan.analysis_settings(),
                **({} if label is None else {"label": label}),  # zoo models' tasks keep their digests
            }
            plan.add(f"analyze/{name}/{material}", "analyze", analyze_config,
                     [*(t.key for t in md_tasks), *(t.key for t in refs)], {"out_dir": "."}, labels)
    return list(plan.tasks.values())


def count_by_stage(tasks: list[Task]) -> dict[str, int]:
    return {stage: sum(t.stage == stage for t in tasks) for stage in STAGES}
