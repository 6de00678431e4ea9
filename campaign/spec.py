"""The campaign spec: one validated model of the YAML file a user writes.

Every field has a description and its unit in its name. ``load_spec`` reads the file with
``yaml.safe_load`` and turns every problem into one ``SpecError`` that names the file, the YAML
path of each bad value and what was expected, before anything is written anywhere.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Discriminator, Field, Tag, ValidationError, ValidationInfo, field_validator, model_validator

from analysis.rdf import DEFAULT_N_BINS, DEFAULT_R_MAX_A, MAX_N_BINS, MAX_R_MAX_A, MIN_N_BINS
from mlff.md.engine import engine_class, engine_names
from mlff.md.protocol import STEP_COUNT_TOLERANCE
from mlff.pretrained import FINE_TUNABLE, Pretrained, resolve_weight_paths, results_label
from records.errors import CampaignError
from records.results import REFERENCE_SOURCE
from records.settings import PositiveFloat, ResourcesSpec, StoreSpec, Strict
from workflows.inputs import DEFAULT_COLLAPSE_WINDOW_PS
from records.units import FS_PER_PS

Temperature_K = Annotated[float, Field(gt=0, le=5000)]
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
    ramp_ps: float = Field(5.0, ge=0, description="Velocity-scaling ramp from md.ramp.start_K to T, in ps.")
    production_ps: PositiveFloat = Field(50.0, description="Nosé–Hoover NVT length kept as reference frames, in ps.")
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
    energy_weight: PositiveFloat = Field(1.0, description="Loss weight of energy errors (paper 1).")
    force_weight: PositiveFloat = Field(1000.0, description="Loss weight of force errors (paper 1000).")
    learning_rate: PositiveFloat = Field(1e-3, description="Adam learning rate.")
    batch_size: int = Field(8, ge=1, description="Structures per optimisation step.")
    max_epochs: int = Field(100, ge=1, description="Upper bound on epochs.")
    max_wall_minutes: PositiveFloat | None = Field(
        600.0, description="Training wall-time budget in minutes (paper 10 h); null for none."
    )


class PredictionSpec(Strict):
    n_frames: int = Field(2000, ge=1, description="Held-out frames per material scored for energy and force errors.")


class RampSpec(Strict):
    start_K: Temperature_K = Field(100.0, description="Temperature the velocity-scaling ramp starts from.")
    ramp_ps: float = Field(5.0, ge=0, description="Ramp length in ps.")


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
    timestep_fs: PositiveFloat = Field(2.0, le=10.0, description="Integration time step in fs.")
    ramp: RampSpec = Field(default_factory=RampSpec, description="Velocity-scaling ramp before NVT.")
    production_ps: PositiveFloat = Field(50.0, description="Nosé–Hoover NVT length in ps.")
    discard_ps: float = Field(15.0, ge=0, description="Production time discarded as equilibration before analysis.")
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


class RDFSpec(Strict):
    r_max_A: PositiveFloat = Field(DEFAULT_R_MAX_A, le=MAX_R_MAX_A, description="Largest pair distance of the RDF in Å.")
    n_bins: int = Field(DEFAULT_N_BINS, ge=MIN_N_BINS, le=MAX_N_BINS, description="Number of RDF bins.")
    pairs: list[tuple[str, str]] = Field(
        default_factory=list, description="Partial RDFs to compute as [element, element] pairs; the total is always."
    )
    frame_stride: int = Field(1, ge=1, description="Use every n-th frame for the RDF.")


class AnalysisSpec(Strict):
    rdf: RDFSpec = Field(default_factory=RDFSpec, description="Radial distribution function settings.")
    rdf_mae_threshold: PositiveFloat = Field(
        0.02, description="A run is stable when its RDF MAE against the reference is below this (paper 0.02)."
    )
    fusion_distance_A: PositiveFloat = Field(1.0, description="A minimum interatomic distance below this is atom fusion.")
    diffusing_specie: str = Field("Li", description="Element whose MSD gives the diffusivity and conductivity.")
    target_temperature_K: Temperature_K = Field(300.0, description="Arrhenius extrapolation temperature.")
    collapse_window_ps: PositiveFloat = Field(
        DEFAULT_COLLAPSE_WINDOW_PS, description="Window of the RDF MAE over time that dates a run's collapse, ps "
        "(MDsim: 1 ps)."
    )


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
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Slurm settings.")

    @field_validator("models")
    @classmethod
    def _known_models(cls, models: dict) -> dict:
        from mlff.models import MODELS, build_model

        for name, hparams in models.items():
            if isinstance(hparams, PretrainedSpec):
                if name in MODELS or name == REFERENCE_SOURCE:
                    raise ValueError(f"model {name!r}: a pretrained entry needs a name of its own, not a registered "
                                     f"model's or {REFERENCE_SOURCE!r} (e.g. {hparams.pretrained.split(':')[-1]}-zs)")
                continue
            if name not in MODELS:
                raise ValueError(f"unknown model {name!r}; registered models are {sorted(MODELS)}")
            try:
                build_model(name, **hparams)
            except (TypeError, ValueError) as err:
                raise ValueError(f"model {name!r}: bad hyperparameters: {err}") from err
        return models

    @model_validator(mode="after")
    def _cross_references(self) -> CampaignSpec:
        from ase.data import atomic_numbers

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
        symbols = [self.analysis.diffusing_specie, *(s for pair in self.analysis.rdf.pairs for s in pair)]
        unknown = sorted({s for s in symbols if s not in atomic_numbers})
        if unknown:
            raise ValueError(f"analysis: unknown element symbols {unknown} (diffusing_specie, rdf.pairs)")
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
        for name, material in self.materials.items():
            if material.structure not in BUILTIN_STRUCTURES:
                try:
                    atoms = load_structure(material.structure, base_dir)
                except ValueError as err:
                    raise ValueError(f"materials.{name}.structure: {err}") from None
                shortest_A = min_pair_distance_A(atoms, fusion_A)
                if shortest_A < fusion_A:
                    raise ValueError(
                        f"materials.{name}.structure: two atoms are {shortest_A:.3g} Å apart, closer than "
                        f"analysis.fusion_distance_A ({fusion_A} Å): the structure starts fused"
                    )
            for index, entry in enumerate(material.imported or []):
                try:
                    check_reference_file(Path(base_dir) / entry.path)
                except ValueError as err:
                    raise ValueError(f"materials.{name}.import[{index}].path: {err}") from None
        for name, entry in self.pretrained_models().items():
            try:
                pretrained_model(entry, base_dir).check()
            except ValueError as err:
                raise ValueError(f"models.{name}: {err}") from None
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
