"""What a careless user gets: `validate` catches what would fail later, every error is one message (exit 2 for
a bad spec or option, 1 otherwise) naming the file and the YAML path, and read commands never write."""

from __future__ import annotations

import copy
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from click.testing import CliRunner

from campaign.cli import main
from cu_campaign import cu_spec, write_cu_campaign
from mlff.trajectory import MAGIC, TrajectoryWriter
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


def _frames(path: Path) -> Path:
    cell = np.eye(3) * 6.0
    with TrajectoryWriter(path, [3, 16], cell, fields=[]) as writer:
        for frame in range(10):
            writer.append(frame, 2.0 * frame, np.array([[1.0 + 0.01 * frame, 1, 1], [4.0, 4, 4]]))
    return path


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
