"""Machine-learning force fields: models, training, prediction and MD engines.

``from mlff import load_calculator`` works; it is imported on first use so that
``import mlff.trajectory`` stays free of torch.

To add a model, write a ``ForceField`` subclass in ``mlff/models/<module>.py``, register it by name in
``mlff/models/__init__.py`` and give it small sizes in ``tests/model_sizes.py``: training, prediction,
the calculator and every MD engine then take it by name, and the tests that run over the registry
check it (``mlff.models`` has the steps).

To add an MD engine, write ``mlff/md/<name>_engine.py`` whose ``ENGINE`` is an ``mlff.md.engine.Engine``:
the driver (``mlff.md.driver.run_md``) runs it, and a spec's ``md.engine`` accepts ``<name>``
(``mlff.md`` has the steps).
"""

__all__ = ["BEST_CHECKPOINT", "load_calculator"]

BEST_CHECKPOINT = "best.pt"  # a training run's best-validation checkpoint, in its output directory


def __getattr__(name: str):
    if name == "load_calculator":
        from mlff.calculator import load_calculator

        return load_calculator
    raise AttributeError(f"module 'mlff' has no attribute {name!r}")
