"""Machine-learning force fields: models, training, prediction and MD engines.

``from mlff import load_calculator`` works; it is imported on first use so that
``import mlff.trajectory`` stays free of torch.
"""

__all__ = ["BEST_CHECKPOINT", "load_calculator"]

BEST_CHECKPOINT = "best.pt"  # a training run's best-validation checkpoint, in its output directory


def __getattr__(name: str):
    if name == "load_calculator":
        from mlff.calculator import load_calculator

        return load_calculator
    raise AttributeError(f"module 'mlff' has no attribute {name!r}")
