"""The campaign spec: one validated model of the YAML file a user writes.

Every field has a description and its unit in its name. ``load_spec`` reads the file with
``yaml.safe_load`` and turns every problem into one ``SpecError`` that names the file, the YAML
path of each bad value and what was expected, before anything is written anywhere.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Discriminator, Field, Tag, ValidationError, ValidationInfo, field_validator, model_validator

from analysis.settings import AnalysisSettings, Temperature_K
from mlff.md.engine import engine_class, engine_names
from mlff.md.protocol import PAPER_DISCARD_PS, STEP_COUNT_TOLERANCE, MDProtocol
from mlff.pretrained import FINE_TUNABLE, Pretrained, is_weight_option, resolve_weight_paths, results_label
from mlff.training import ENERGY_WEIGHT, FORCE_WEIGHT
from records.errors import CampaignError
from records.results import REFERENCE_SOURCE
from records.settings import PositiveFloat, ResourcesSpec, StoreSpec, Strict
from records.store import StoreError, read_launchpad_file
from records.units import FS_PER_PS

# The paper's MD protocol, as the code runs it by default (mlff/md/protocol.py).
PAPER_PROTOCOL = MDProtocol(temperature_K=1000.0)

NEIGHBOUR_LIST_ENGINE = "torch"  # the MD engine that sees pairs only within a model's cutoff (mlff/md/torch_engine.py)
MAX_MODEL_PARAMETERS = 10**9  # values in a model's tensors (4 GB in float32): 20x eSCN's at the paper's size
FLOAT32_BYTES = 4
CAMPAIGN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MATERIAL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"


class SpecError(CampaignError, ValueError):
    """A campaign spec that cannot be used; the message lists every problem with its YAML path."""


class CampaignSection(Strict):
    name: str = Field(..., pattern=CAMPAIGN_NAME_PATTERN, description="Campaign name; scopes everything stored.")
    store: StoreSpec = Field(
        default_factory=lambda: StoreSpec(embedded="campaign-store.json"),
        description="Where workflows and results are stored.",
    )
    launcher: Literal["local", "slurm"] = Field(
        "local",
        description="How rockets run: `local` runs them one by one on this machine; `slurm` submits job arrays "
        "(see the `resources` section).",
    )
    workdir: str = Field("campaign-runs", description="Directory for all files the campaign writes, relative to the spec.")
    seed: int = Field(0, ge=0, description="Base seed; every task derives its own recorded seed from it.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Torch device; auto picks CUDA when present.")

    @field_validator("device")
    @classmethod
    def _cuda_build(cls, device: str) -> str:
        import torch

        if device == "cuda" and torch.version.cuda is None:
            raise ValueError(f"cuda, but this torch ({torch.__version__}) is a CPU build; use auto or cpu, or "
                             "install a CUDA build of torch")
        return device


class GeneratedReference(Strict):
    """Reference MD run by an ASE calculator with the paper's protocol, at every MD temperature."""

    calculator: str = Field(
        "chgnet", description="`chgnet`, `sevennet-0` or an ASE calculator class as `package.module:ClassName` "
        "(mlff/pretrained.py), built without arguments."
    )
    runs: int = Field(1, ge=1, le=100, description="Independent runs per temperature (the paper: 3).")
    ramp_ps: float = Field(PAPER_PROTOCOL.ramp_ps, ge=0, description="Velocity-scaling ramp from md.ramp.start_K to T, in ps.")
    production_ps: PositiveFloat = Field(PAPER_PROTOCOL.production_ps, description="Nosé–Hoover NVT length kept as reference frames, in ps.")
    save_every_steps: int = Field(1, ge=1, description="Keep every n-th production step.")

    @field_validator("calculator")
    @classmethod
    def _ase_calculator(cls, name: str) -> str:
        Pretrained(name).check()
        return name


class ImportedReference(Strict):
    path: str = Field(..., description="extxyz, ASE .traj, vasprun.xml or XDATCAR file, relative to the spec.")
    temperature_K: Temperature_K = Field(..., description="Temperature the trajectory was run at.")
    timestep_fs: PositiveFloat = Field(..., description="Time between the file's frames, in fs.")


class MaterialSpec(Strict):
    structure: str = Field(
        ..., description="Built-in `LGPS`, `Li2S`, `Li3PS4` or `Li4GeS4` (mlff/structures.py), or a structure file "
        "(CIF, POSCAR, extxyz) relative to the spec."
    )
    generate: GeneratedReference | None = Field(None, description="Generate reference trajectories by MD.")
    imported: list[ImportedReference] | None = Field(
        None, alias="import", description="Import reference trajectories, one entry per run."
    )

    @model_validator(mode="after")
    def _one_source(self) -> MaterialSpec:
        if (self.generate is None) == (self.imported is None):
            raise ValueError("give exactly one of `generate` or `import` for the reference trajectories")
        if self.imported is not None and not self.imported:
            raise ValueError("`import` lists no trajectories")
        return self


class TrainingSpec(Strict):
    material: str = Field(..., description="The material whose reference frames train every model.")
    temperatures_K: list[Temperature_K] = Field(
        ..., min_length=1, description="Reference temperatures whose frames train the models (paper: 800-1200 K)."
    )
    n_train_per_run: int = Field(2000, ge=1, description="Training frames drawn from each reference run.")
    n_validation_per_run: int = Field(500, ge=1, description="Validation frames drawn from each reference run.")
    energy_weight: PositiveFloat = Field(ENERGY_WEIGHT, description="Loss weight of energy errors (paper 1).")
    force_weight: PositiveFloat = Field(FORCE_WEIGHT, description="Loss weight of force errors (paper 1000).")
    learning_rate: PositiveFloat = Field(1e-3, description="Adam learning rate.")
    batch_size: int = Field(8, ge=1, description="Structures per optimisation step.")
    max_epochs: int = Field(100, ge=1, description="Upper bound on epochs.")
    max_wall_minutes: PositiveFloat | None = Field(
        600.0, description="Training wall-time budget in minutes (paper 10 h); null for none."
    )


class PredictionSpec(Strict):
    n_frames: int = Field(2000, ge=1, description="Held-out frames per material scored for energy and force errors.")


class RampSpec(Strict):
    start_K: Temperature_K = Field(PAPER_PROTOCOL.ramp_start_K, description="Temperature the velocity-scaling ramp starts from.")
    ramp_ps: float = Field(PAPER_PROTOCOL.ramp_ps, ge=0, description="Ramp length in ps.")


class MDSpec(Strict):
    engine: str = Field(
        "ase", description="MD engine (mlff/md/<engine>_engine.py): `ase` (ASE's Nosé–Hoover chain), `torch` (our "
        "batched integrator) or `lammps` (LAMMPS through fix external).",
    )
    temperatures_K: list[Temperature_K] = Field(..., min_length=1, description="Target temperatures.")
    repetitions: int = Field(6, ge=1, le=1000, description="Independent runs per model, material and temperature.")
    batch: Literal["none", "repetitions", "all"] = Field(
        "none",
        description="Runs integrated together as one batch (one firework) by the torch engine: `none` runs each "
        "alone; `repetitions` batches the repetitions of one model, material and temperature; `all` batches every "
        "temperature and repetition of one model and material. Each run keeps its own seed and trajectory.",
    )
    tabulate_filters: bool = Field(
        True,
        description="Evaluate distance-only parts of a model from cubic tables whose values and slopes are verified "
        "to 1e-6 of their largest magnitude, when it has any (SchNet's filters: about 2x faster MD); false evaluates "
        "them exactly.",
    )
    timestep_fs: PositiveFloat = Field(PAPER_PROTOCOL.timestep_fs, le=10.0, description="Integration time step in fs.")
    ramp: RampSpec = Field(default_factory=RampSpec, description="Velocity-scaling ramp before NVT.")
    production_ps: PositiveFloat = Field(PAPER_PROTOCOL.production_ps, description="Nosé–Hoover NVT length in ps.")
    discard_ps: float = Field(PAPER_DISCARD_PS, ge=0, description="Production time discarded as equilibration before analysis.")
    save_every_steps: int = Field(1, ge=1, description="Write every n-th production step to the trajectory.")

    @field_validator("temperatures_K")
    @classmethod
    def _distinct(cls, temperatures: list[float]) -> list[float]:
        if len(set(temperatures)) != len(temperatures):
            raise ValueError("temperatures must be distinct")
        return sorted(temperatures)

    @model_validator(mode="after")
    def _discard_within_production(self) -> MDSpec:
        if self.discard_ps >= self.production_ps:
            raise ValueError(f"discard_ps ({self.discard_ps}) must be shorter than production_ps ({self.production_ps})")
        return self

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, engine: str) -> str:
        if engine not in engine_names():
            raise ValueError(f"unknown MD engine {engine!r}; expected one of {', '.join(map(repr, engine_names()))}")
        return engine

    @model_validator(mode="after")
    def _batch_needs_a_batched_engine(self) -> MDSpec:
        if self.batch != "none" and not engine_class(self.engine).batched:
            batched = " or ".join(name for name in engine_names() if engine_class(name).batched)
            raise ValueError(
                f"batch: {self.batch!r} needs engine: {batched} (an engine that integrates runs together), "
                f"got engine: {self.engine!r}"
            )
        return self


class PretrainedSpec(Strict):
    """A universal pretrained MLIP as a campaign model (mlff/pretrained.py)."""

    pretrained: str = Field(..., description="`chgnet`, `sevennet-0`, or an ASE calculator class as "
                            "`package.module:ClassName` (weights on disk, never downloaded).")
    mode: Literal["zero_shot", "fine_tune"] = Field(
        ..., description="`zero_shot`: as it is; `fine_tune`: trained further on training's split with training's "
        "settings (chgnet)."
    )
    options: dict[str, Any] = Field(
        {}, description="Keyword arguments of a calculator class; those ending in path, paths or file name weight "
        "files, relative to the spec."
    )

    @field_validator("options")
    @classmethod
    def _weight_files_are_paths(cls, options: dict[str, Any]) -> dict[str, Any]:
        for key, value in options.items():
            files = value if isinstance(value, list) else [value]
            if is_weight_option(key) and not (files and all(isinstance(f, str) and f for f in files)):
                raise ValueError(f"{key}: a weight file option takes a path (text) or a list of paths, relative to "
                                 f"the spec; got {value!r}")
        return options

    @model_validator(mode="after")
    def _buildable(self) -> PretrainedSpec:
        Pretrained(self.pretrained, self.options).calculator_class()
        if self.mode == "fine_tune" and self.pretrained not in FINE_TUNABLE:
            raise ValueError(f"mode: fine_tune is available for {', '.join(FINE_TUNABLE)}, not {self.pretrained}; "
                             "use zero_shot")
        return self

    @property
    def label(self) -> str:
        return results_label(self.pretrained, self.mode)


def _requested_elements(args: tuple, kwargs: dict) -> int:
    """How many elements a tensor constructor's arguments ask for: ``empty(3, 4)``, ``zeros((3, 4))``,
    ``full((3, 4), 0.5)``, ``randint(0, 9, (3, 4))``, ``randn(size=(3, 4))``."""
    size = kwargs.get("size")
    if size is None:
        size = next((arg for arg in args if isinstance(arg, list | tuple)), None)
    if size is None:
        size = [arg for arg in args if isinstance(arg, int) and not isinstance(arg, bool)]
    return math.prod(int(n) for n in size)


class _OverBudget(ValueError):
    """A model's constructor asked for more tensor values than MAX_MODEL_PARAMETERS."""


def _build_within_budget(name: str, hparams: dict):
    """Zoo model ``name`` with ``hparams``, built only while its tensors hold at most MAX_MODEL_PARAMETERS
    values in all; past that a ValueError says how many the constructor asked for, before it gets them."""
    import torch
    from torch.overrides import TorchFunctionMode

    from mlff.models import build_model

    constructors = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.randint,
                    torch.empty_strided}

    class Budget(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.n_values = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in constructors:
                self.n_values += _requested_elements(args, kwargs)
                if self.n_values > MAX_MODEL_PARAMETERS:
                    raise _OverBudget(
                        f"model {name!r}: these hyperparameters make tensors of more than {self.n_values:.3g} values "
                        f"({self.n_values * FLOAT32_BYTES / 1e9:.3g} GB in float32); at most "
                        f"{MAX_MODEL_PARAMETERS:.0e} are allowed")
            return func(*args, **kwargs)

    with Budget():
        try:
            return build_model(name, **hparams)
        except _OverBudget:
            raise
        except (TypeError, ValueError) as err:
            raise ValueError(f"model {name!r}: bad hyperparameters: {err}") from err


def _model_entry(entry: object) -> str:
    pretrained = isinstance(entry, PretrainedSpec) or (isinstance(entry, dict) and "pretrained" in entry)
    return "tagged-pretrained" if pretrained else "tagged-zoo"  # parse_spec leaves tags out of YAML paths


ZooHparams = dict[str, int | float | str | bool | None]
ModelEntry = Annotated[
    Union[Annotated[PretrainedSpec, Tag("tagged-pretrained")], Annotated[ZooHparams, Tag("tagged-zoo")]],  # noqa: UP007
    Discriminator(_model_entry),
]


class CampaignSpec(Strict):
    campaign: CampaignSection
    materials: dict[Annotated[str, Field(pattern=MATERIAL_NAME_PATTERN)], MaterialSpec] = Field(..., min_length=1)
    training: TrainingSpec
    models: dict[Annotated[str, Field(pattern=MATERIAL_NAME_PATTERN)], ModelEntry] = Field(
        ..., min_length=1, description="Model name from the registry -> hyperparameter overrides; or a free name -> "
        "a pretrained MLIP (`pretrained`, `mode`, `options`)."
    )
    prediction: PredictionSpec = Field(default_factory=PredictionSpec)
    md: MDSpec
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Slurm settings.")

    @field_validator("models")
    @classmethod
    def _known_models(cls, models: dict) -> dict:
        from mlff.models import MODELS

        for name, hparams in models.items():
            if isinstance(hparams, PretrainedSpec):
                if name in MODELS or name == REFERENCE_SOURCE:
                    raise ValueError(f"model {name!r}: a pretrained entry needs a name of its own, not a registered "
                                     f"model's or {REFERENCE_SOURCE!r} (e.g. {hparams.pretrained.split(':')[-1]}-zs)")
                continue
            if name not in MODELS:
                raise ValueError(f"unknown model {name!r}; registered models are {sorted(MODELS)}")
            _build_within_budget(name, hparams)
        return models

    @model_validator(mode="after")
    def _cross_references(self) -> CampaignSpec:
        if self.resources.rockets == "online" and self.campaign.store.embedded:
            raise ValueError(
                "resources.rockets: online rockets need a MongoDB store the compute nodes reach; "
                "the embedded store only works with offline rockets"
            )
        if self.training.material not in self.materials:
            raise ValueError(
                f"training.material: {self.training.material!r} is not one of materials {sorted(self.materials)}"
            )
        for name, material in self.materials.items():
            if material.generate is not None:
                if material.generate.production_ps <= self.md.discard_ps:
                    raise ValueError(
                        f"materials.{name}.generate.production_ps: {material.generate.production_ps} must be "
                        f"longer than md.discard_ps ({self.md.discard_ps}), which analysis discards"
                    )
                continue
            have = {entry.temperature_K for entry in material.imported}
            missing = [t for t in self.reference_temperatures_K(name) if t not in have]
            if missing:
                raise ValueError(
                    f"materials.{name}.import: no reference trajectory at {missing} K (each MD temperature "
                    "needs a reference to compare the RDF with, and training needs its temperatures)"
                )
        md = self.md
        durations = {"md.ramp.ramp_ps": md.ramp.ramp_ps, "md.production_ps": md.production_ps, "md.discard_ps": md.discard_ps}
        for name, material in self.materials.items():
            if material.generate is not None:
                durations[f"materials.{name}.generate.ramp_ps"] = material.generate.ramp_ps
                durations[f"materials.{name}.generate.production_ps"] = material.generate.production_ps
        for path, duration_ps in durations.items():
            n_steps = duration_ps * FS_PER_PS / md.timestep_fs
            if abs(n_steps - round(n_steps)) > STEP_COUNT_TOLERANCE:
                raise ValueError(f"{path}: {duration_ps} ps is not a whole number of md.timestep_fs "
                                 f"({md.timestep_fs} fs) steps ({n_steps:.6g})")
        if round(md.production_ps * FS_PER_PS / md.timestep_fs) < md.save_every_steps:
            raise ValueError(f"md.production_ps: {md.production_ps} ps is shorter than md.save_every_steps "
                             f"({md.save_every_steps}) steps: no frame would be written")
        return self

    @model_validator(mode="after")
    def _work_that_can_be_done(self) -> CampaignSpec:
        """Temperatures that name distinct tasks, atom fusion the MD engine can see, and enough reference frames
        for training's split."""
        from campaign.tasks import temperature_label

        where: dict[float, set[str]] = {}  # temperature -> the YAML paths that give it
        for temperature_K in self.md.temperatures_K:
            where.setdefault(temperature_K, set()).add("md.temperatures_K")
        for temperature_K in self.training.temperatures_K:
            where.setdefault(temperature_K, set()).add("training.temperatures_K")
        for name, material in self.materials.items():
            for index, entry in enumerate(material.imported or []):
                where.setdefault(entry.temperature_K, set()).add(f"materials.{name}.import[{index}].temperature_K")
        by_label: dict[str, list[float]] = {}
        for temperature_K in sorted(where):
            by_label.setdefault(temperature_label(temperature_K), []).append(temperature_K)
        for label, same in by_label.items():
            if len(same) > 1:
                paths = ", ".join(sorted(set().union(*(where[t] for t in same))))
                raise ValueError(f"{paths}: {' K and '.join(map(repr, same))} K share the task label {label}, so one "
                                 "temperature's work would stand for the other's; give temperatures that differ in "
                                 "their first 6 significant digits")
        if self.md.engine == NEIGHBOUR_LIST_ENGINE:
            from mlff.models import MODELS

            for name, hparams in self.models.items():
                if isinstance(hparams, PretrainedSpec):  # run by the ASE engine, which sees every pair
                    continue
                cutoff_A = hparams.get("cutoff_A", inspect.signature(MODELS[name]).parameters["cutoff_A"].default)
                if self.analysis.fusion_distance_A >= cutoff_A:
                    raise ValueError(
                        f"analysis.fusion_distance_A: {self.analysis.fusion_distance_A} Å is not below model "
                        f"{name!r}'s cutoff_A ({cutoff_A} Å), the farthest the {NEIGHBOUR_LIST_ENGINE} engine looks "
                        "for pairs, so it could never see atoms fuse")
        material = self.materials[self.training.material]
        needed = self.training.n_train_per_run + self.training.n_validation_per_run
        if material.generate is not None:
            n_steps = round(material.generate.production_ps * FS_PER_PS / self.md.timestep_fs)
            n_frames = n_steps // material.generate.save_every_steps
            if n_frames < needed:
                raise ValueError(
                    f"training.n_train_per_run: it and n_validation_per_run draw {needed} frames from each "
                    f"reference run, but a run of materials.{self.training.material}.generate writes {n_frames} "
                    f"(production_ps / md.timestep_fs / save_every_steps)")
        return self

    @model_validator(mode="after")
    def _readable_files(self, info: ValidationInfo) -> CampaignSpec:
        """With the spec's folder (``base_dir`` in the validation context, as ``load_spec`` gives it), read
        every structure file and look at every reference file, so that a bad file fails here, not in a stage."""
        base_dir = (info.context or {}).get("base_dir")
        if base_dir is None:
            return self
        from mlff.md.protocol import min_pair_distance_A
        from mlff.reference import check_reference_file
        from mlff.structures import BUILTIN_STRUCTURES, load_structure

        fusion_A = self.analysis.fusion_distance_A
        elements: set[str] = set()
        for name, material in self.materials.items():
            try:
                atoms = load_structure(material.structure, base_dir)
            except ValueError as err:
                raise ValueError(f"materials.{name}.structure: {err}") from None
            elements.update(atoms.get_chemical_symbols())
            shortest_A = min_pair_distance_A(atoms, fusion_A)
            if shortest_A < fusion_A:
                built_in = " (a built-in)" if material.structure in BUILTIN_STRUCTURES else ""
                raise ValueError(
                    f"materials.{name}.structure: two atoms of {material.structure}{built_in} are {shortest_A:.3g} Å "
                    f"apart, closer than analysis.fusion_distance_A ({fusion_A} Å): every run would start fused"
                )
            for index, entry in enumerate(material.imported or []):
                try:
                    check_reference_file(Path(base_dir) / entry.path)
                except ValueError as err:
                    raise ValueError(f"materials.{name}.import[{index}].path: {err}") from None
        if self.analysis.diffusing_specie not in elements:
            raise ValueError(f"analysis.diffusing_specie: no material contains {self.analysis.diffusing_specie} (they "
                             f"hold {', '.join(sorted(elements))}), so no run would have a diffusivity")
        for name, entry in self.pretrained_models().items():
            try:
                pretrained_model(entry, base_dir).check()
            except ValueError as err:
                raise ValueError(f"models.{name}: {err}") from None
        if self.campaign.store.launchpad:
            try:
                read_launchpad_file(Path(base_dir) / self.campaign.store.launchpad)
            except StoreError as err:
                raise ValueError(f"campaign.store.launchpad: {err}") from None
        return self

    def pretrained_models(self) -> dict[str, PretrainedSpec]:
        return {name: entry for name, entry in self.models.items() if isinstance(entry, PretrainedSpec)}

    def reference_temperatures_K(self, material: str) -> list[float]:
        """Temperatures a material needs reference runs at: every MD temperature, plus training's."""
        needed = set(self.md.temperatures_K)
        if material == self.training.material:
            needed |= set(self.training.temperatures_K)
        return sorted(needed)

    def spec_hash(self) -> str:
        """sha256 of the canonical JSON of the validated spec."""
        canonical = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def check_reference_data(spec: CampaignSpec, spec_path: str | Path) -> None:
    """Read every imported reference file whole, as its reference stage will, and raise SpecError naming the
    spec file and the YAML path for one that does not read to its end (a truncated file), whose composition is
    not its material's structure's, or, at a training temperature of training's material, that holds fewer
    frames than training's split draws from each run.

    ``load_spec`` looks at a reference file's first frame only, as every command loads the spec; this reads
    every frame, so the commands that plan work (`validate`, `submit`) call it."""
    from ase import Atoms

    from mlff.reference import read_reference
    from mlff.structures import load_structure

    base_dir = Path(spec_path).resolve().parent
    needed = spec.training.n_train_per_run + spec.training.n_validation_per_run
    for name, material in spec.materials.items():
        formula = load_structure(material.structure, base_dir).get_chemical_formula(empirical=True)
        for index, entry in enumerate(material.imported or []):
            where = f"{spec_path}: invalid campaign spec\n  materials.{name}.import[{index}].path"
            try:
                run = read_reference(base_dir / entry.path, entry.timestep_fs)
            except ValueError as err:
                raise SpecError(f"{where}: {err}") from None
            found = Atoms(numbers=run.numbers).get_chemical_formula(empirical=True)
            if found != formula:
                raise SpecError(f"{where}: {entry.path} holds {found}, but the material's structure "
                                f"({material.structure}) is {formula}; a reference must be of the same material")
            training = name == spec.training.material and entry.temperature_K in spec.training.temperatures_K
            if training and run.n_frames < needed:
                raise SpecError(f"{where}: {entry.path} holds {run.n_frames} frames, fewer than the {needed} that "
                                f"training.n_train_per_run and n_validation_per_run draw from each run")


def pretrained_model(entry: PretrainedSpec, base_dir: str | Path) -> Pretrained:
    """The pretrained model of an entry, its weight files' relative paths under the spec's folder ``base_dir``."""
    return Pretrained(entry.pretrained, resolve_weight_paths(entry.options, base_dir))


def _yaml_path(location: tuple) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _describe(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key (check its spelling against the documented keys)"
    if error["type"] == "missing":
        return "required key is missing"
    expected = error["msg"].removeprefix("Value error, ")
    given = error.get("input")
    if isinstance(given, (str, int, float, bool)) and error["type"] != "value_error":
        return f"{expected} (got {given!r})"
    return expected


def parse_spec(data: object, source: str = "<spec>", base_dir: Path | None = None) -> CampaignSpec:
    """Validate an already-loaded YAML document; with ``base_dir`` (the spec's folder) also the files it names."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: the spec must be a YAML mapping at the top level, got {type(data).__name__}")
    try:
        return CampaignSpec.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as err:
        lines = []
        for error in err.errors():
            location = tuple(part for part in error["loc"] if not str(part).startswith(("function-", "tagged-")))
            path = _yaml_path(location)
            lines.append(f"  {path}: {_describe(error)}" if path else f"  {_describe(error)}")
        raise SpecError(f"{source}: invalid campaign spec\n" + "\n".join(lines)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, but a key given twice in one mapping is an error, not the last one winning."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first on line {seen[key] + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_spec(path: str | Path) -> CampaignSpec:
    """Read and validate a campaign YAML file (UTF-8; a key given twice is an error)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(f"{path}: cannot read the spec file ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not a UTF-8 text file (byte {err.start}); save the spec as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from None
    return parse_spec(data, source=str(path), base_dir=path.resolve().parent)
