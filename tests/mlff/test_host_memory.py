"""mlff.host_memory: freed host memory is reused instead of faulted in again every MD step."""

import subprocess
import sys
import textwrap

import pytest

PROGRAM = textwrap.dedent("""
    import ctypes
    import resource
    import torch
    from mlff.host_memory import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, retain_freed_memory
    from mlff.models import build_model, energy_and_forces
    from mlff.structures import load_structure

    torch.set_num_threads(1)
    model = build_model("schnet", hidden_channels=32, num_interactions=2, cutoff_A=6.0)
    graph = model.make_graph([load_structure("LGPS")] * 2)

    def faults_per_call():
        for _ in range(10):  # the heap grows to its working size
            energy_and_forces(model, graph)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            energy_and_forces(model, graph)
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20

    # glibc's thresholds as it starts (128 kB), fixed: its dynamic mmap threshold would otherwise
    # adapt by a varying amount during the warm-up.
    mallopt = ctypes.CDLL("libc.so.6").mallopt
    mallopt(M_MMAP_THRESHOLD, 128 * 1024), mallopt(M_TRIM_THRESHOLD, 128 * 1024)
    default = faults_per_call()
    applied = retain_freed_memory()
    print(default, applied, faults_per_call())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc is Linux's")
def test_model_calls_stop_faulting_in_pages():
    # A fresh process: the setting is process-wide and the test session may already have it.
    output = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True).stdout
    default, applied, retained = output.split()
    assert applied == "True", output
    assert float(default) > 200, output  # the baseline this fixes: hundreds of page faults per call
    assert float(retained) < float(default) / 10, output
