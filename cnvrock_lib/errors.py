"""Exceptions raised for bad input; the CLI prints them without a traceback.

Every message names the file, key or sample at fault and what was expected.
Exit codes (see docs/RELIABILITY.md): 2 bad params or input (or an output
location that cannot be written), 3 stage failure, 4 out_dir locked by another
run, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 1 anything unexpected.
"""


class CnvrockError(Exception):
    """Base class of the errors a user can fix; ``exit_code`` is for the CLI."""

    exit_code = 2


class ParamsError(CnvrockError):
    """A params YAML is invalid (unknown key, wrong type, missing file)."""


class StoreError(CnvrockError):
    """An NPY store is malformed or inconsistent."""


class InputError(CnvrockError):
    """A table (ground truth, metadata, gene panel, ids) is malformed."""


class StageError(CnvrockError):
    """A pipeline stage failed; the message names the stage and cell."""

    exit_code = 3


class LockedError(CnvrockError):
    """Another run holds the lock of this out_dir."""

    exit_code = 4


class OutputError(CnvrockError):
    """An artefact cannot be written (disk full, read-only or missing folder); nothing partial is left."""


class Terminated(CnvrockError):
    """The run received SIGTERM (Slurm pre-emption, time limit, ``kill``); a rerun continues."""

    exit_code = 143  # 128 + SIGTERM, what a scheduler expects from a terminated job
