"""Which torch device a stage runs on (params key ``device``: auto | cpu | cuda)."""

from __future__ import annotations

from .errors import ParamsError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto", what: str = "device"):
    """``auto`` → CUDA when torch sees a GPU, else CPU; ``cuda`` without a GPU is a params error (exit 2),
    raised by the runner's preflight before any work and by each stage.

    Returns a ``torch.device``. ``what`` names the params key in the error message.
    """
    import torch

    if name not in DEVICES:
        raise ParamsError(f"key '{what}' = {name!r}; expected one of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamsError(f"key '{what}' = 'cuda' but no CUDA GPU is visible to this process (torch "
                          f"{torch.__version__}); expected 'auto' or 'cpu' on this machine")
    return torch.device(name)
