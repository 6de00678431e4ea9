"""The memory model that sizes the torch engine's model calls (mlff/md/autobatch.py), on CPU."""

from __future__ import annotations

import pytest
import torch

from mlff.md.autobatch import PROBE_REPLICAS, CallMemory, LiveBytes
from mlff.md.neighbours import NeighbourList
from mlff.md.protocol import MDProtocol
from mlff.md.torch_engine import TorchEngine
from mlff.models import build_model
from mlff.structures import load_structure

MEGABYTE_F64 = 125_000  # float64 values in 1 MB


def test_live_bytes_counts_what_the_operations_hold():
    before = torch.ones(MEGABYTE_F64, dtype=torch.float64)  # made outside: not counted
    with LiveBytes() as count:
        doubled = before * 2  # 1 MB
        shifted = doubled + 1  # 2 MB held
        view = shifted.view(-1, 5)  # the same storage
        del doubled, shifted  # the view keeps its storage
        assert count.live_bytes == 1_000_000
        total = view.sum()  # 8 bytes
        del view
    assert count.peak_bytes == 2_000_000
    assert count.live_bytes == total.element_size()


def test_backward_pass_memory_is_counted():
    """A product's backward needs both its inputs: their gradients are as large as they are."""
    leaf = torch.ones(MEGABYTE_F64, dtype=torch.float64, requires_grad=True)
    with LiveBytes() as count:
        squared = leaf * leaf  # saves leaf (not counted: made outside), holds 1 MB
        (gradient,) = torch.autograd.grad(squared.sum(), leaf)
    assert gradient.shape == leaf.shape
    assert count.peak_bytes >= 2_000_000  # squared and the gradient at least


def test_the_memory_of_a_force_call_is_linear_in_its_replicas():
    """The fit of one and four replicas predicts a call of nine to a few per cent."""
    torch.manual_seed(0)
    model = build_model("schnet", hidden_channels=32, num_interactions=2, cutoff_A=6.0).double()
    engine = TorchEngine(model, load_structure("LGPS"))
    positions_A = torch.as_tensor(load_structure("LGPS").positions, dtype=torch.float64)[None]

    def call(n_replicas: int):
        neighbours = NeighbourList(model.cutoff_A, engine.skin_A, model.max_neighbours, engine.cell_A)
        return engine._evaluate_group(neighbours, positions_A.expand(n_replicas, -1, -1), None)

    memory = CallMemory.measure(call, torch.device("cpu"))
    with LiveBytes() as count:
        call(9)
    assert memory.bytes_per_replica > 1e6  # a 50-atom call with a few thousand pairs
    assert memory.fixed_bytes + 9 * memory.bytes_per_replica == pytest.approx(count.peak_bytes, rel=0.03)
    budget_bytes = memory.fixed_bytes + 6.5 * memory.bytes_per_replica
    assert memory.replicas_within(budget_bytes) == 6
    assert memory.replicas_within(0.0) == 1  # one replica per call at least
    assert PROBE_REPLICAS > 1


def test_a_memory_budget_sets_how_many_replicas_share_a_call(tmp_path):
    """Within a budget of about two and a half replicas, five replicas go in calls of at most two, and
    follow the paths they follow in one call."""
    torch.manual_seed(0)
    model = build_model("schnet", hidden_channels=16, num_interactions=1, cutoff_A=4.0).double()
    atoms = load_structure("Li2S")
    probe = TorchEngine(model, atoms)
    positions_A = torch.as_tensor(atoms.positions, dtype=torch.float64)[None]
    memory = CallMemory.measure(lambda n: probe._evaluate_group(
        NeighbourList(model.cutoff_A, probe.skin_A, model.max_neighbours, probe.cell_A),
        positions_A.expand(n, -1, -1), None), torch.device("cpu"))
    protocol = MDProtocol(temperature_K=600.0, ramp_ps=0.01, production_ps=0.02)
    budgeted = TorchEngine(model, atoms, memory_budget_bytes=memory.fixed_bytes + 2.5 * memory.bytes_per_replica)
    budgeted.start([protocol] * 5, [atoms.get_momenta()] * 5)
    assert budgeted.replicas_per_call == 2
    sizes = [stop - start for start, stop, _ in budgeted.groups]
    assert sum(sizes) == 5 and max(sizes) == 2
    together = TorchEngine(model, atoms, replicas_per_call=5)
    together.start([protocol] * 5, [atoms.get_momenta()] * 5)
    for _ in range(5):
        budgeted.advance([None] * 5)
        together.advance([None] * 5)
    torch.testing.assert_close(budgeted.replicas.positions_A, together.replicas.positions_A, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="not both"):
        TorchEngine(model, atoms, replicas_per_call=2, memory_budget_bytes=1e9)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_count_matches_the_allocator_and_ninety_quickstart_replicas_share_one_call():
    """The CUDA allocator's peaks (what the engine measures there) and LiveBytes' count agree, and the
    default budget, 0.8 of the free memory, takes 90 quickstart SchNet replicas of LGPS in one call."""
    torch.manual_seed(0)
    device = torch.device("cuda")
    model = build_model("schnet", hidden_channels=32, num_interactions=2, cutoff_A=6.0).to(device)
    atoms = load_structure("LGPS")
    engine = TorchEngine(model, atoms)
    positions_A = torch.as_tensor(atoms.positions, dtype=torch.float64, device=device)[None]

    def call(n_replicas: int):
        neighbours = NeighbourList(model.cutoff_A, engine.skin_A, model.max_neighbours, engine.cell_A)
        return engine._evaluate_group(neighbours, positions_A.expand(n_replicas, -1, -1), None)

    memory = CallMemory.measure(call, device)
    with LiveBytes() as count:
        call(PROBE_REPLICAS)
    assert count.peak_bytes == pytest.approx(memory.fixed_bytes + PROBE_REPLICAS * memory.bytes_per_replica, rel=0.25)
    protocol = MDProtocol(temperature_K=600.0, ramp_ps=0.01, production_ps=0.02)
    engine.start([protocol] * 90, [atoms.get_momenta()] * 90)
    assert engine.replicas_per_call >= 90 and len(engine.groups) == 1
