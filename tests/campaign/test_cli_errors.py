"""What a careless user gets: `validate` catches what would fail later, every error is one message (exit 2 for
a bad spec or option, 1 otherwise) naming the file and the YAML path, and read commands never write."""

from __future__ import annotations

import copy
import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.build import bulk
from click.testing import CliRunner

from campaign.cli import main
from cu_campaign import cu_spec, write_cu_campaign
from mlff.trajectory import MAGIC, TrajectoryWriter
from records.store import SERVER_TIMEOUT_S, EmbeddedStore, results_collection
from repo_paths import ROOT

PARTIAL_CIF = """data_x
_cell_length_a 5.0
_cell_length_b 5.0
_cell_length_c 5.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Li1 Li 0.0 0.0 0.0 0.5
S1 S 0.5 0.5 0.5 1.0
"""


def _invoke(*args: str):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def _spec_with(tmp_path: Path, change) -> Path:
    """The Cu campaign's spec, changed by ``change(spec_dict, folder)``."""
    spec = cu_spec("careless")
    path = write_cu_campaign(tmp_path, spec)
    changed = copy.deepcopy(spec)
    change(changed, tmp_path)
    path.write_text(yaml.safe_dump(changed))
    return path


def _structure_file(name: str, text: str):
    def change(spec, folder):
        (folder / name).write_text(text)
        spec["materials"]["Cu"]["structure"] = name
    return change


def _overlapping(spec, folder):
    Atoms("Cu2", positions=[[0, 0, 0], [0.3, 0, 0]], cell=[6, 6, 6], pbc=True).write(folder / "fused.extxyz")
    spec["materials"]["Cu"]["structure"] = "fused.extxyz"


def _set(*path_and_value):
    *path, value = path_and_value

    def change(spec, _folder):
        section = spec
        for key in path[:-1]:
            section = section[key]
        section[path[-1]] = value
    return change


def _builtin_closer_than_fusion(spec, _folder):
    spec["materials"]["Cu"]["structure"] = "Li2S"  # its Li-S pairs are 2.47 Å apart
    spec["analysis"].update({"diffusing_specie": "Li", "fusion_distance_A": 2.6})


def _fusion_beyond_the_torch_cutoff(spec, _folder):
    spec["md"]["engine"] = "torch"
    spec["models"]["schnet"]["cutoff_A"] = 1.5
    spec["analysis"]["fusion_distance_A"] = 2.0


def _imported(n_frames: int, *, element: str = "Cu", truncated: bool = False):
    """The Cu material's reference imported from an extxyz file of ``n_frames`` rattled frames, with one atom
    made ``element``, or cut off in its last frame."""
    def change(spec, folder):
        frames = []
        for seed in range(n_frames):
            atoms = bulk("Cu", cubic=True).repeat(2)
            atoms.rattle(0.01, seed=seed)
            atoms[0].symbol = element
            frames.append(atoms)
        path = folder / "reference.extxyz"
        ase.io.write(path, frames)
        if truncated:
            text = path.read_text()
            path.write_text(text[: len(text) - len(text) // (2 * n_frames)])
        del spec["materials"]["Cu"]["generate"]
        spec["materials"]["Cu"]["import"] = [{"path": path.name, "temperature_K": 300, "timestep_fs": 2}]
    return change


def _pretrained_weights(value):
    return _set("models", "emt", {"pretrained": "ase.calculators.emt:EMT", "mode": "zero_shot",
                                  "options": {"model_path": value}})


def _launchpad_file(text: str | None):
    def change(spec, folder):
        if text is not None:
            (folder / "launchpad.yaml").write_text(text)
        spec["campaign"]["store"] = {"launchpad": "launchpad.yaml"}
    return change


NO_SERVER = "mongodb://127.0.0.1:1/campaign"  # a port no MongoDB listens on: refused at once, as a host that is down

BAD_SPECS = {
    "missing structure": (_set("materials", "Cu", "structure", "nowhere.cif"), "materials.Cu.structure", "no file"),
    "garbage structure": (_structure_file("garbage.cif", "not a structure\n"), "materials.Cu.structure", "cannot read"),
    "partly occupied structure": (_structure_file("partial.cif", PARTIAL_CIF), "materials.Cu.structure", "partially"),
    "overlapping atoms": (_overlapping, "materials.Cu.structure", "closer than analysis.fusion_distance_A"),
    "not a calculator": (_set("materials", "Cu", "generate", "calculator", "ase.atoms:Atoms"),
                         "materials.Cu.generate.calculator", "not an ASE calculator class"),
    "missing import path": (_set("materials", "Cu", "generate", "calculator", "no_such_package.calc:Calc"),
                            "materials.Cu.generate.calculator", "cannot import"),
    "infinite duration": (_set("md", "production_ps", float("inf")), "md.production_ps", "finite number"),
    "NaN value": (_set("md", "timestep_fs", float("nan")), "md.timestep_fs", "finite number"),
    "fraction of a step": (_set("md", "production_ps", 0.1003), "md.production_ps", "not a whole number"),
    "text hyperparameter": (_set("models", "schnet", "hidden_channels", "abc"), "models", "must be int, got 'abc'"),
    "float for an integer": (_set("models", "schnet", "hidden_channels", 8.7), "models", "must be int, got 8.7"),
    "huge cutoff": (_set("models", "schnet", "cutoff_A", 1e6), "models", "cutoff_A must be at most"),
    "boolean for an integer": (_set("md", "repetitions", True), "md.repetitions",
                               "expected a number, got the YAML boolean true"),
    "boolean among numbers": (_set("md", "temperatures_K", [300, False]), "md.temperatures_K",
                              "expected numbers, got a YAML boolean"),
    "diffusing specie in no material": (_set("analysis", "diffusing_specie", "Li"), "analysis.diffusing_specie",
                                        "no material contains Li"),
    "built-in closer than fusion": (_builtin_closer_than_fusion, "materials.Cu.structure",
                                    "two atoms of Li2S (a built-in) are 2.47 Å apart"),
    "fusion beyond the torch cutoff": (_fusion_beyond_the_torch_cutoff, "analysis.fusion_distance_A",
                                       "is not below model 'schnet''s cutoff_A (1.5 Å)"),
    "truncated reference": (_imported(100, truncated=True), "materials.Cu.import[0].path", "cannot read as extxyz"),
    "reference of another composition": (_imported(100, element="Ni"), "materials.Cu.import[0].path",
                                         "reference.extxyz holds Cu31Ni, but the material's structure"),
    "imported runs too short to train on": (_imported(50), "materials.Cu.import[0].path",
                                            "holds 50 frames, fewer than the 80"),
    "generated runs too short to train on": (_set("training", "n_train_per_run", 1000), "training.n_train_per_run",
                                             "draw 1020 frames from each reference run, but a run"),
    "huge hidden sizes": (_set("models", "schnet", "hidden_channels", 10**7), "models", "at most 1e+09 are allowed"),
    "relative calculator path": (_set("materials", "Cu", "generate", "calculator", ".emt:EMT"),
                                 "materials.Cu.generate.calculator", ".emt is a relative module name"),
    "weights given as an integer": (_pretrained_weights(3), "models.emt.options", "model_path: a weight file option"),
    "weights given as null": (_pretrained_weights(None), "models.emt.options", "model_path: a weight file option"),
    "missing launchpad file": (_launchpad_file(None), "campaign.store.launchpad", "cannot read the launchpad file"),
    "garbage launchpad file": (_launchpad_file("{: : [\n"), "campaign.store.launchpad",
                               "the launchpad file is not valid YAML"),
    "launchpad file of a list": (_launchpad_file("- host\n- port\n"), "campaign.store.launchpad",
                                 "a launchpad file is a YAML mapping of LaunchPad settings"),
    "no server at the URI": (_set("campaign", "store", {"uri": NO_SERVER}), "campaign.store",
                             "no MongoDB server answers at 127.0.0.1:1"),
    "two temperatures of one label": (_set("md", "temperatures_K", [900, 900.00001]), "md.temperatures_K",
                                      "900.0 K and 900.00001 K share the task label 900K"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_validate_catches_what_would_fail_later_and_writes_nothing(tmp_path, case):
    change, yaml_path, expected = BAD_SPECS[case]
    spec_path = _spec_with(tmp_path, change)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = _invoke("validate", spec_path)
    assert result.exit_code == 2, result.output
    assert str(spec_path) in result.output and yaml_path in result.output and expected in result.output, result.output
    assert "Traceback" not in result.output and "less than or equal" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no store, no workdir


@pytest.mark.parametrize("command", ["submit", "status"])
def test_a_launchpad_file_of_a_list_is_a_message_at_every_command(tmp_path, command):
    spec_path = _spec_with(tmp_path, _launchpad_file("- host\n- port\n"))
    result = _invoke(command, spec_path)
    assert result.exit_code == 2 and "campaign.store.launchpad" in result.output, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback


@pytest.mark.parametrize("store", [{"uri": NO_SERVER}, "launchpad"], ids=["uri", "launchpad file"])
def test_a_store_with_no_server_is_one_line_naming_the_host_within_seconds(tmp_path, store):
    def change(spec, folder):
        (folder / "launchpad.yaml").write_text("host: 127.0.0.1\nport: 1\nname: campaign\n")
        spec["campaign"]["store"] = {"launchpad": "launchpad.yaml"} if store == "launchpad" else store
    spec_path = _spec_with(tmp_path, change)
    started = time.monotonic()
    result = _invoke("status", spec_path)
    assert time.monotonic() - started < SERVER_TIMEOUT_S + 3
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    (line,) = result.output.strip().splitlines()
    assert "no MongoDB server answers at 127.0.0.1:1" in line


def test_a_cuda_device_is_caught_on_a_cpu_build_of_torch_and_accepted_on_a_cuda_build(tmp_path):
    """A login node validates specs without a GPU: only a torch that cannot run CUDA at all is an error."""
    result = _invoke("validate", _spec_with(tmp_path, _set("campaign", "device", "cuda")))
    if torch.version.cuda is None:
        assert result.exit_code == 2 and "campaign.device" in result.output and "CPU build" in result.output
    else:
        assert result.exit_code == 0, result.output


def test_a_key_given_twice_and_a_spec_that_is_not_utf8_are_clear_errors(tmp_path):
    path = _spec_with(tmp_path, lambda spec, folder: None)
    path.write_text(path.read_text() + "md:\n  repetitions: 3\n")
    twice = _invoke("validate", path)
    assert twice.exit_code == 2 and "key 'md' is given twice" in twice.output
    path.write_bytes(b"campaign:\n  name: caf\xe9\n")
    latin1 = _invoke("validate", path)
    assert latin1.exit_code == 2 and "not a UTF-8 text file" in latin1.output and "Traceback" not in latin1.output


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"fireworks": 3}'], ids=["garbage", "a list", "wrong shape"])
@pytest.mark.parametrize("command", ["status", "results", "report", "run"])
def test_an_unreadable_store_is_a_message_not_a_traceback(tmp_path, command, content):
    spec = _spec_with(tmp_path, _set("campaign", "store", {"embedded": "store.json"}))
    (tmp_path / "store.json").write_text(content)
    result = _invoke(command, spec)
    assert result.exit_code == 1, result.output
    assert "cannot read the embedded store" in result.output and str(tmp_path / "store.json") in result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    assert (tmp_path / "store.json").read_text() == content  # and nothing replaced


@pytest.mark.parametrize("command", ["status", "results", "report"])
def test_read_commands_on_a_campaign_never_submitted_say_so_and_write_nothing(tmp_path, command):
    spec = _spec_with(tmp_path, lambda spec, folder: None)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = _invoke(command, spec)
    assert result.exit_code == 1 and "no embedded store there" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no workdir, no store, no lock file


def test_a_read_only_store_is_an_error_and_keeps_its_mode(tmp_path):
    spec = _spec_with(tmp_path, lambda spec, folder: None)
    assert _invoke("submit", "--no-run", spec).exit_code == 0
    store = tmp_path / "store.json"
    store.chmod(0o444)
    content = store.read_bytes()
    result = _invoke("submit", "--no-run", spec)
    assert result.exit_code == 1 and "read-only" in result.output and str(store) in result.output
    assert stat.S_IMODE(store.stat().st_mode) == 0o444 and store.read_bytes() == content
    assert _invoke("status", spec).exit_code == 0  # reading it is fine


def _frames(path: Path, n_frames: int = 10) -> Path:
    cell = np.eye(3) * 6.0
    with TrajectoryWriter(path, [3, 16], cell, fields=[]) as writer:
        for frame in range(n_frames):
            writer.append(frame, 2.0 * frame, np.array([[1.0 + 0.01 * frame, 1, 1], [4.0, 4, 4]]))
    return path


def _header_only(path: Path, length: int | None = None, **changes) -> Path:
    """A .frames file of a header (the Li-S one of ``_frames`` with ``changes``) and no frames; ``length``: the
    header length its first 16 bytes claim instead of the true one."""
    header = json.dumps({"numbers": [3, 16], "cell_A": (np.eye(3) * 6.0).tolist(), "fields": [], "metadata": {},
                         **changes}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(MAGIC + (length or len(header)).to_bytes(8, "little") + header)
    return path


BAD_TRAJECTORIES = {
    "a header and no frames": (_header_only, [], "holds no frames"),
    "a header claiming a huge length": (lambda path: _header_only(path, length=2**62), [],
                                        "header truncated, or its length corrupt: it claims 4611686018427387904 bytes"),
    "an unknown header field": (lambda path: _header_only(path, fields=["velocity_A_fs"]), [],
                                "unknown trajectory fields ['velocity_A_fs'] in the header"),
    "numbers that are no list": (lambda path: _header_only(path, numbers=5), [],
                                 "the header's numbers must be a non-empty list of atomic numbers"),
    "a cell that is not 3 x 3": (lambda path: _header_only(path, cell_A=[6, 6]), [],
                                 "the header's cell_A must be 3 x 3 finite numbers"),
    "one frame": (lambda path: _frames(path, 1), [], "1 analysed frame(s) after the first 0 ps; an MSD needs at least 3"),
    "two frames": (lambda path: _frames(path, 2), [], "2 analysed frame(s) after the first 0 ps; an MSD needs at least"),
    "a specie not in the file": (_frames, ["--specie", "Na"], "has no Na (the diffusing element; --specie)"),
    "a discard longer than the run": (_frames, ["--discard-ps", "1"], "--discard-ps 1 ps leaves no frames: the run ends "
                                                                     "at 0.018 ps"),
}


@pytest.mark.parametrize("case", list(BAD_TRAJECTORIES))
def test_analyze_refuses_a_trajectory_it_cannot_analyse_naming_the_file(tmp_path, case):
    write, options, expected = BAD_TRAJECTORIES[case]
    path = write(tmp_path / "run.frames")
    result = _invoke("analyze", path, "--temperature-K", "800", *options)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output  # no traceback
    assert f"{path}: " in result.output and expected in result.output, result.output


@pytest.mark.parametrize("options, expected", [
    (["--specie", "Xx"], "'Xx' is not an element symbol"),
    (["--temperature-K", "nan"], "must be a finite number > 0"),
    (["--r-max-A", "1000"], "1000"),
], ids=["unknown element", "NaN temperature", "huge RDF range"])
def test_analyze_refuses_bad_options_with_a_message(tmp_path, options, expected):
    arguments = ["analyze", _frames(tmp_path / "run.frames"), "--temperature-K", "800", *options]
    result = _invoke(*arguments)
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output, result.output


def test_analyze_names_a_trajectory_whose_header_lacks_a_key(tmp_path):
    header = json.dumps({"numbers": [3, 16], "fields": []}).encode()  # no cell_A
    header += b" " * (-len(header) % 8)
    path = tmp_path / "broken.frames"
    path.write_bytes(MAGIC + len(header).to_bytes(8, "little") + header)
    result = _invoke("analyze", path, "--temperature-K", "800")
    assert result.exit_code == 1 and str(path) in result.output and "cell_A" in result.output
    assert isinstance(result.exception, SystemExit), result.output


def test_the_tests_system_packages_are_installed_by_make_test_or_named():
    """`make test` installs what the Slurm and browser tests need when it runs as root; as another user it
    names the command instead (here: run without root, on a PATH without Slurm's and munge's daemons)."""
    assert "test: $(STAMP) system-packages" in (ROOT / "Makefile").read_text()
    as_nobody = [shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    done = subprocess.run([*as_nobody, shutil.which("bash"), str(ROOT / ".ci" / "system-packages.sh")],
                          env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "sudo apt-get install slurm-wlm munge" in done.stderr, done.stderr


def _submitted(tmp_path: Path, name: str = "careless") -> Path:
    """The Cu campaign ``name`` submitted to store.json (nothing run), with two stored MD run documents of schnet
    at 300 K: repetition 0, which the spec plans, and 5, which a spec with more repetitions left."""
    spec_path = write_cu_campaign(tmp_path, cu_spec(name))
    assert _invoke("submit", "--no-run", spec_path).exit_code == 0
    with EmbeddedStore(tmp_path / "store.json").write() as launchpad:
        for repetition in (0, 5):
            results_collection(launchpad).insert_one({
                "_id": f"{name}/run/schnet/Cu/300K/{repetition}", "campaign": name, "kind": "run", "source": "schnet",
                "material": "Cu", "temperature_K": 300.0, "repetition": repetition, "rdf_mae": 0.01})
    return spec_path


def test_run_on_a_spec_never_submitted_says_how_to_submit_and_creates_nothing(tmp_path):
    spec_path = _spec_with(tmp_path, lambda spec, folder: None)
    before = sorted(p.name for p in tmp_path.iterdir())
    for command in (["run", spec_path], ["run", "--retry-failed", spec_path]):
        result = _invoke(*command)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert "nothing to run: campaign 'careless' has not been submitted" in result.output
        assert f"`campaign submit {spec_path}`" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no store, no lock, no workdir


@pytest.mark.parametrize("command", ["status", "results"])
def test_a_store_of_another_campaign_says_which_it_holds(tmp_path, command):
    _submitted(tmp_path, "alpha")
    other = tmp_path / "beta.yaml"
    other.write_text(yaml.safe_dump(cu_spec("beta")))
    result = _invoke(command, other)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "holds no campaign 'beta' (it holds campaign(s) 'alpha')" in result.output


@pytest.mark.parametrize("options, expected", [
    (["--model", "mace"], "match --model mace (its runs have: schnet)"),
    (["--material", "LGPS"], "match --material LGPS (its runs have: Cu)"),
    (["--temperature-K", "1000"], "match --temperature-K 1000.0 (its runs have: 300.0)"),
    (["--campaign", "gamma"], "holds no campaign 'gamma' (it holds campaign(s) 'careless')"),
], ids=["model", "material", "temperature", "campaign"])
def test_results_filters_that_match_nothing_say_so(tmp_path, options, expected):
    result = _invoke("results", _submitted(tmp_path), *options)
    assert result.exit_code == 1 and expected in result.output, result.output


@pytest.mark.parametrize("value", ["nan", "-5", "inf"])
def test_results_refuses_a_temperature_that_is_no_temperature(tmp_path, value):
    result = _invoke("results", _spec_with(tmp_path, lambda spec, folder: None), "--temperature-K", value)
    assert result.exit_code == 2 and "--temperature-K" in result.output and "finite number > 0" in result.output


def test_results_warns_of_runs_the_spec_no_longer_plans(tmp_path):
    """md.repetitions lowered from 6 to 2 after a run: the stored repetition 5 is still in the aggregates."""
    result = _invoke("results", _submitted(tmp_path))
    assert result.exit_code == 0, result.output
    assert "the table includes 1 run(s) that" in result.output and "schnet/Cu/300K/rep5" in result.output


@pytest.mark.parametrize("lock", ["store.json.lock", "runs/launches/local-launcher.lock"])
def test_a_lock_path_that_is_a_directory_is_one_line(tmp_path, lock):
    spec_path = _submitted(tmp_path)
    (tmp_path / lock).unlink(missing_ok=True)
    (tmp_path / lock).mkdir(parents=True)
    result = _invoke("run", spec_path)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"{tmp_path / lock}: cannot open" in result.output and "(Is a directory)" in result.output


def _reported(tmp_path: Path) -> Path:
    """The Cu campaign submitted, with the result documents of test_report's toy campaign stored as its own."""
    from test_report import _campaign

    spec_path = write_cu_campaign(tmp_path, cu_spec("careless"))
    assert _invoke("submit", "--no-run", spec_path).exit_code == 0
    docs, _ = _campaign(tmp_path)
    with EmbeddedStore(tmp_path / "store.json").write() as launchpad:
        results_collection(launchpad).insert_many([{**doc, "campaign": "careless"} for doc in docs])
    return spec_path


def test_report_names_the_rdf_curve_whose_file_was_deleted(tmp_path):
    spec_path = _reported(tmp_path)
    (tmp_path / "analyze" / "toymodel" / "rdf.npz").unlink()
    result = _invoke("report", spec_path, "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    assert (f"the RDF of toymodel on toyLiS is missing ({tmp_path / 'analyze' / 'toymodel' / 'rdf.npz'}); the RDF "
            "figure of toyLiS is drawn without its curve") in result.output


def test_report_into_a_folder_it_cannot_write_is_one_line(tmp_path):
    """A file where the report's folder should be: a folder no user can write into, even root."""
    spec_path = _reported(tmp_path)
    (tmp_path / "blocked").write_text("")
    result = _invoke("report", spec_path, "--out", tmp_path / "blocked" / "report")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"{tmp_path / 'blocked' / 'report'}: cannot write the report" in result.output
