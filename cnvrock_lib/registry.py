"""Registered implementations selected by the params' module keys.

The original resolved ``architecture: "06_conv_vae"`` etc. by importlib at run
time; here the names map to library objects, and an unknown name is an error
listing the known ones (checked in ``params``).
"""

from __future__ import annotations

# module key -> {registered name: "module:attribute"}
REGISTRY: dict[str, dict[str, str]] = {
    "architecture": {"06_conv_vae": "cnvrock_lib.model:ConvVAE"},
    "hmm": {"02_gaussian_hmm": "cnvrock_lib.hmm:GaussianHMM"},
    "cnv": {"06_gene_cnv_caller": "cnvrock_lib.calling:call_genes"},
    "evaluation": {"04_kpsc_evaluation": "cnvrock_lib.evaluation:evaluate"},
}


def known_names(key: str) -> list[str]:
    """Registered names for a module key (``architecture``, ``hmm``, ``cnv``, ``evaluation``)."""
    return sorted(REGISTRY[key])

