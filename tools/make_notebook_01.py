"""Build notebooks/01_train_vae.ipynb (committed without outputs). Run: python tools/make_notebook_01.py"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    ("md", """# Stage 01 — train the Conv-VAE

The VAE learns what a sample's depth profile *should* look like given the cohort:
replication gradient (ori/ter), GC bias of its sequencing batch, lineage-specific
deletions, unmappable stretches. Its reconstruction, decoded from the latent mean,
is the **expected depth** against which stage 02 measures copy ratios; an
amplification private to one sample should *not* be reproduced.

Input per sample: x = log2(counts / m + 1), m = the sample's robust median depth.
Loss = reconstruction (masked bins excluded) + β·KL (β warms up) + the auxiliary
loss chosen by `aux_loss` (`align`: a linear head must predict the sample's regional
CNV pattern from its latent mean). Bins within `vae_gene_mask_padding` bp of each
chromosomal panel gene are left out of the loss too, and their expected depth is the
cohort profile scaled to the sample's own flank (`vae_gene_fill`), so an amplicon that
is common in the cohort cannot enter the expected depth. See `docs/training.md` for the
design and the ablations."""),
    ("param", 'params_path = "../params/demo.yaml"'),
    ("code", 'from cnvrock_lib import report\nprm = report.setup_notebook(params_path, stage="01")'),
    ("md", """## Train

Hold-out samples (`holdout_ids_path`) are neither trained on nor validated on; a seeded
validation split drives early stopping (never before the warm-ups end). A rerun with
the same params resumes from `checkpoint_last.pth`."""),
    ("code", "from cnvrock_lib import training\nfrom cnvrock_lib.plots import training as training_plots\n\n"
             "result = training.train_vae(prm)\ntraining.summary_table(result.summary)"),
    ("md", """## Loss curves

Total loss on training and validation samples, each term, and the β and aux-weight
warm-up schedules. The red line marks the epoch whose weights were kept."""),
    ("code", "log = training.load_training_log(prm.out_path)\n"
             "training_plots.loss_curves(log, result.summary['best_epoch']);"),
    ("md", """## Latent space

PCA of the latent means of every sample (hold-out included, open circles), coloured by
sequence type and species from the metadata (samples without metadata: `unknown`).
Lineages with their own deletions should separate."""),
    ("code", "latent_table, explained = training.latent_pca_table(prm)\n"
             "training_plots.latent_pca(latent_table, explained);"),
    ("md", """## Observed vs expected depth

A typical sample never trained on, the worst-reconstructed sample, and the sample with the
strongest local excess over its reconstruction (a sample-specific amplification that
the expected depth should leave flat)."""),
    ("code", "errors = training.reconstruction_error(prm)\n"
             "training_plots.reconstruction_examples(training.example_tracks(prm, errors));"),
    ("code", "errors.groupby('split')['median_abs_log2'].describe()"
             ".rename(columns=lambda c: f'{c} |log2 obs/exp|')"),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook()
    for i, (kind, src) in enumerate(CELLS):
        cell = new_markdown_cell(src) if kind == "md" else new_code_cell(src)
        if kind == "param":
            cell.metadata["tags"] = ["parameters"]
        cell.id = f"train-{i:02d}"  # stable ids: rebuilding gives the same file
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "notebooks" / "01_train_vae.ipynb"
    nbformat.write(build(), target)
    print(f"wrote {target}")
