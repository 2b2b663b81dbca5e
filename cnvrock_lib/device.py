"""Which torch device a stage runs on (params key ``device``: auto | cpu | cuda)."""

from __future__ import annotations

from .errors import ParamsError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto", what: str = "device"):
    """``auto`` → CUDA when torch sees a GPU, else CPU; ``cuda`` without a GPU is a params error (exit 2).

    Returns a ``torch.device``. ``what`` names the setting in the error message.
    """
    import torch

    if name not in DEVICES:
        raise ParamsError(f"{what} = {name!r}; expected one of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamsError(f"{what}: cuda was asked for, but torch sees no CUDA device (set {what}: auto or cpu)")
    return torch.device(name)
