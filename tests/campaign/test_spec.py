"""The spec: the examples validate, and every kind of mistake fails with its YAML path, writing nothing."""

import copy

import pytest
import yaml
from click.testing import CliRunner

from campaign.cli import main
from campaign.spec import SpecError, load_spec, parse_spec
from repo_paths import EXAMPLES


@pytest.fixture(scope="module")
def quickstart() -> dict:
    return yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())


def test_every_example_validates():
    for path in sorted(EXAMPLES.glob("*.yaml")):
        spec = load_spec(path)
        assert spec.campaign.name


def test_paper_defaults_where_the_quickstart_is_silent(quickstart):
    data = copy.deepcopy(quickstart)
    del data["training"]["force_weight"], data["training"]["energy_weight"]
    data["md"] = {"temperatures_K": [1000, 800]}
    for material in data["materials"].values():
        material["generate"] = {}
    spec = parse_spec(data)
    assert (spec.training.energy_weight, spec.training.force_weight) == (1.0, 1000.0)
    assert spec.md.timestep_fs == 2.0 and spec.md.ramp.start_K == 100.0 and spec.md.ramp.ramp_ps == 5.0
    assert (spec.md.production_ps, spec.md.discard_ps, spec.md.repetitions) == (50.0, 15.0, 6)
    assert spec.md.temperatures_K == [800.0, 1000.0]
    assert spec.analysis.rdf_mae_threshold == 0.02 and spec.analysis.target_temperature_K == 300.0


def _set(data: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        data = data[key]
    if value is _DELETE:
        del data[last]
    else:
        data[last] = value


_DELETE = object()

BAD_SPECS = [
    # (YAML path to change, new value, YAML path the error must name, words the error must contain)
    ("campaign.nmae", "typo", "campaign.nmae", "unknown key"),
    ("campaign.name", _DELETE, "campaign.name", "required"),
    ("campaign.name", "has spaces", "campaign.name", "pattern"),
    ("campaign.launcher", "pbs", "campaign.launcher", "'local'"),
    ("campaign.store", {"embedded": "a.json", "uri": "mongodb://x"}, "campaign.store", "exactly one"),
    ("campaign.store", {"uri": "http://x"}, "campaign.store", "mongodb://"),
    ("campaign.device", "tpu", "campaign.device", "'cpu'"),
    ("materials.LGPS.generate", None, "materials.LGPS", "exactly one of `generate` or `import`"),
    ("materials.LGPS.generate.runs", 0, "materials.LGPS.generate.runs", "greater than or equal to 1"),
    ("materials.LGPS.generate.production_ps", 0.1, "materials.LGPS.generate.production_ps", "longer than md.discard_ps"),
    ("training.material", "Li3PS4", "training.material", "'Li3PS4' is not one of materials"),
    ("training.force_weight", -1, "training.force_weight", "greater than 0"),
    ("training.batch_size", "eight", "training.batch_size", "valid integer"),
    ("training.temperatures_K", _DELETE, "training.temperatures_K", "required"),
    ("models", {"schnett": {}}, "models", "unknown model 'schnett'"),
    ("models", {"schnet": {"hidden_chanels": 32}}, "models", "hidden_chanels"),
    ("models", {}, "models", "at least 1"),
    ("models", {"schnet": {"pretrained": "chgnet", "mode": "zero_shot"}}, "models", "needs a name of its own"),
    ("models", {"reference": {"pretrained": "chgnet", "mode": "zero_shot"}}, "models", "needs a name of its own"),
    ("models", {"sn": {"pretrained": "sevennet-0", "mode": "fine_tune"}}, "models.sn", "fine_tune is available for chgnet"),
    ("models", {"cz": {"pretrained": "chgnet", "mode": "zeroshot"}}, "models.cz.mode", "'zero_shot' or 'fine_tune'"),
    ("models", {"cz": {"pretrained": "chgnet", "mode": "zero_shot", "optons": {}}}, "models.cz.optons", "unknown key"),
    ("models", {"cz": {"pretrained": "chgnet", "mode": "zero_shot", "options": {"a": 1}}}, "models.cz", "no options"),
    ("models", {"m": {"pretrained": "mace", "mode": "zero_shot"}}, "models.m", "unknown pretrained model or calculator"),
    ("models", {"m": {"pretrained": "mace.calculators:MACECalculator", "mode": "zero_shot"}}, "models.m", "cannot import"),
    ("models", {"emt": {"pretrained": "ase.calculators.emt:EMT", "mode": "zero_shot", "options": {"model_path": "x.model"}}},
     "models.emt", "x.model not found; nothing is downloaded"),
    ("md.temperatures_K", [800, 800], "md.temperatures_K", "distinct"),
    ("md.temperatures_K", [-5], "md.temperatures_K[0]", "greater than 0"),
    ("md.timestep_fs", 50, "md.timestep_fs", "less than or equal to 10"),
    ("md.discard_ps", 5.0, "md", "shorter than production_ps"),
    ("md.engine", "gromacs", "md.engine", "'ase'"),
    ("md.ramp.ramp_fs", 5, "md.ramp.ramp_fs", "unknown key"),
    ("analysis.diffusing_specie", "Xx", "analysis.diffusing_specie", "unknown element symbols ['Xx']"),
    ("analysis.rdf.pairs", [["Li", "Xx"]], "analysis.rdf.pairs", "unknown element symbols ['Xx']"),
    ("analysis.rdf.pairs", [["Li"]], "analysis.rdf.pairs[0][1]", "required"),
    ("prediction.n_frames", 0, "prediction.n_frames", "greater than or equal to 1"),
]


@pytest.mark.parametrize(("path", "value", "where", "words"), BAD_SPECS, ids=[f"{p}={v!r}"[:60] for p, v, _, _ in BAD_SPECS])
def test_bad_spec_names_path_and_expectation(quickstart, path, value, where, words):
    data = copy.deepcopy(quickstart)
    _set(data, path, value)
    with pytest.raises(SpecError) as err:
        parse_spec(data, source="bad.yaml", base_dir=EXAMPLES)
    message = str(err.value)
    assert message.startswith("bad.yaml: invalid campaign spec")
    line = next((ln for ln in message.splitlines()[1:] if ln.strip().startswith(where + ":")), None)
    assert line is not None, f"no error line for {where!r} in:\n{message}"
    assert words in line, message


def test_import_needs_every_md_temperature(quickstart, tmp_path):
    data = copy.deepcopy(quickstart)
    data["materials"]["Li2S"] = {
        "structure": "Li2S",
        "import": [{"path": "li2s_800.extxyz", "temperature_K": 800, "timestep_fs": 2}],
    }
    with pytest.raises(SpecError, match=r"materials.Li2S.import: no reference trajectory at \[1200.0\] K"):
        parse_spec(data)


def test_not_a_mapping_and_not_yaml(tmp_path):
    with pytest.raises(SpecError, match="top level"):
        parse_spec(["a", "b"], source="list.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("campaign: {name: [unclosed\n")
    with pytest.raises(SpecError, match=f"{broken}: not valid YAML"):
        load_spec(broken)
    with pytest.raises(SpecError, match="cannot read the spec file"):
        load_spec(tmp_path / "missing.yaml")


def test_cli_rejects_bad_spec_and_writes_nothing(quickstart, tmp_path):
    data = copy.deepcopy(quickstart)
    data["md"]["temperatures_K"] = [800, "hot"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    for command in (["validate", str(path)], ["submit", "--no-run", str(path)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code != 0
        assert "md.temperatures_K[1]" in result.output and "valid number" in result.output
    assert list(tmp_path.iterdir()) == [path]


def test_validate_prints_counts_and_writes_nothing(tmp_path):
    spec = (EXAMPLES / "quickstart.yaml").read_text()
    path = tmp_path / "q.yaml"
    path.write_text(spec)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    # 2 materials x 2 T x 2 runs of reference; 2 models; 2 models x 2 materials; x 2 T x 2 repetitions.
    counts = dict(line.split() for line in result.output.splitlines()[1:])
    assert counts == {"reference": "8", "train": "2", "predict": "4", "md": "16", "analyze": "6", "total": "36"}
    assert list(tmp_path.iterdir()) == [path]


def test_pretrained_entries_are_planned_beside_the_zoo(tmp_path):
    data = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "emt.model").write_text("local weights")  # a calculator class's file, relative to the spec
    data["models"].update({
        "chgnet-zs": {"pretrained": "chgnet", "mode": "zero_shot"},
        "chgnet-ft": {"pretrained": "chgnet", "mode": "fine_tune"},
        "sevennet-zs": {"pretrained": "sevennet-0", "mode": "zero_shot"},
        "emt-local": {"pretrained": "ase.calculators.emt:EMT", "mode": "zero_shot",
                      "options": {"model_file": "weights/emt.model"}},
    })
    data["md"].update({"engine": "torch", "batch": "repetitions"})
    path = tmp_path / "q.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = load_spec(path)
    assert {name: entry.label for name, entry in spec.pretrained_models().items()} == {
        "chgnet-zs": "chgnet zero-shot", "chgnet-ft": "chgnet fine-tuned", "sevennet-zs": "sevennet-0 zero-shot",
        "emt-local": "ase.calculators.emt:EMT zero-shot"}
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    # Trained: the 2 zoo models and chgnet-ft. MD: the zoo in batches of 2 repetitions (2 models x 2 materials
    # x 2 T), the 4 pretrained ones in lone ASE runs (4 x 2 materials x 2 T x 2 repetitions).
    counts = dict(line.split() for line in result.output.splitlines()[1:])
    assert counts == {"reference": "8", "train": "3", "predict": "12", "md": "40", "analyze": "14", "total": "77"}
