"""Stage 01 training on a small synthetic store: artefacts, schedules, split, resume, determinism."""

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from cnvrock_lib import geometry, holdout, reference, store, training
import cnvrock_lib.training.loop  # noqa: F401  (monkeypatched below)
from cnvrock_lib.errors import InputError
from cnvrock_lib.params import load_params

N_SAMPLES, N_BINS, N_HOLDOUT = 48, 600, 6
FAST = {"epochs": 6, "batch_size": 16, "lr": 1e-3, "warmup_epochs": 2, "aux_warmup_epochs": 3, "patience": 3,
        "conv_channels": [4, 8, 8], "aux_n_blocks": 16, "num_threads": 1}


def synthetic_store(root: Path, seed: int = 0) -> tuple[Path, list[str]]:
    """48 samples x 600 bins: replication gradient, three lineage deletions, an unmappable run, a few amplicons."""
    rng = np.random.default_rng(seed)
    pos = np.arange(N_BINS) / N_BINS
    ori_ter = rng.uniform(1.0, 2.5, N_SAMPLES)
    mean = rng.uniform(300, 1500, N_SAMPLES)[:, None] * 2 ** (np.log2(ori_ter)[:, None] * (0.5 - 2 * np.abs(pos - 0.5)))
    lineage = rng.integers(0, 3, N_SAMPLES)
    for group, (a, b) in enumerate([(50, 80), (200, 260), (400, 420)]):
        mean[lineage == group, a:b] = 0.5
    mean[:, 100:105] = 0.2  # unmappable in every sample
    mean[rng.random(N_SAMPLES) < 0.1, 300:310] *= 4
    counts = rng.poisson(mean).astype(np.uint32)
    ids = [f"SRR{i:04d}" for i in range(N_SAMPLES)]
    path = store.write_store(root / "store", counts, ids, reference.make_bins({"chr": N_BINS * 1000 - 300}))
    return path, ids


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_cohort")
    path, ids = synthetic_store(root)
    (root / "holdout.txt").write_text("# hold-out\n" + "\n".join(ids[:N_HOLDOUT]) + "\n")
    meta = pd.DataFrame({"sample_id": ids[: N_SAMPLES - 5], "Species": "Klebsiella pneumoniae",
                         "ST": ["ST11" if i % 2 else "" for i in range(N_SAMPLES - 5)], "sample_accession": "x"})
    meta.to_csv(root / "meta.tsv", sep="\t", index=False)
    return root


def make_params(cohort: Path, out: Path, **overrides):
    raw = {"store_path": str(cohort / "store"), "out_dir": str(out), "holdout_ids_path": str(cohort / "holdout.txt"),
           "kpsc_meta_path": str(cohort / "meta.tsv"), **FAST, **overrides}
    path = out.parent / f"{out.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return load_params(path)


@pytest.fixture(scope="module")
def trained(cohort, tmp_path_factory):
    params = make_params(cohort, tmp_path_factory.mktemp("run") / "out")
    return params, training.train_vae(params, progress=False, log=lambda m: None)


def test_artefact_shapes_and_dtypes(trained):
    params, result = trained
    out = params.out_path
    latents = np.load(out / "latents.npy")
    recon = np.load(out / "reconstructions.npy")
    medians = np.load(out / "medians.npy")
    assert latents.shape == (N_SAMPLES, 10) and latents.dtype == np.float32
    assert recon.shape == (N_SAMPLES, N_BINS) and recon.dtype == np.float32 and (recon >= 0).all()
    assert medians.shape == (N_SAMPLES,) and medians.dtype == np.float64 and (medians >= 1).all()
    log = pd.read_csv(out / "training_log.tsv", sep="\t")
    assert list(log.columns) == training.LOG_COLUMNS and log["epoch"].tolist() == list(range(1, 7))
    split = pd.read_csv(out / "split.tsv", sep="\t")
    assert split["split"].value_counts().to_dict() == {"train": 38, "val": 4, "holdout": 6}
    s = result.summary
    assert (s["n_train"], s["n_val"], s["n_holdout"], s["n_masked_bins"]) == (38, 4, 6, 5)
    assert s["device"] == "cpu" and s["samples_per_second"] > 0 and 3 <= s["best_epoch"] <= 6
    for path in (result.checkpoint, result.checkpoint_last, result.summary_path):
        assert path.is_file()
    # reconstructions are expected read counts: near the observed depth of a typical bin
    counts = np.asarray(store.open_store(params.store_path).counts, dtype=np.float64)
    ratio = np.median(counts[:, 300:] / np.maximum(recon[:, 300:], 1), axis=1)
    assert np.all((ratio > 0.6) & (ratio < 1.6))


def test_load_model_reproduces_latents(trained):
    params, _ = trained
    model, ckpt = training.load_model(params.out_path)
    x = training.normalised_depth(store.open_store(params.store_path).counts, np.load(params.out_path / "medians.npy"))
    latents, _ = training.encode_and_reconstruct(model, x, np.load(params.out_path / "medians.npy"))
    np.testing.assert_allclose(latents, np.load(params.out_path / "latents.npy"), rtol=1e-5, atol=1e-6)
    assert ckpt["epoch"] == ckpt["best"]["epoch"] and set(ckpt) >= {"optimiser", "generator_state", "params_hash"}


def test_loss_falls(cohort, tmp_path):
    params = make_params(cohort, tmp_path / "out", epochs=15, aux_loss="none", lr=1e-2, conv_channels=[8, 16, 16],
                         patience=50)
    training.train_vae(params, progress=False, log=lambda m: None)
    log = training.load_training_log(params.out_path)
    assert log["recon"].iloc[-1] < 0.5 * log["recon"].iloc[0]
    assert log["val_loss"].iloc[-1] < log["val_loss"].iloc[0]
    assert (log["aux"] == 0).all()


def test_schedules():
    assert [training.beta_at(e, 1.0, 20) for e in (1, 11, 21, 100)] == [0.0, 0.5, 1.0, 1.0]
    assert training.beta_at(1, 0.5, 0) == 0.5
    assert training.aux_weight_at(16, 2.0, 30) == pytest.approx(1.0)
    assert training.aux_weight_at(31, 2.0, 30) == 2.0


def test_schedules_in_the_log(trained):
    params, _ = trained
    log = training.load_training_log(params.out_path)
    np.testing.assert_allclose(log["beta"], [0, 0.5, 1, 1, 1, 1])
    np.testing.assert_allclose(log["aux_weight"], [0, 1 / 3, 2 / 3, 1, 1, 1])
    assert training.warmup_end(params) == 4


def test_split_is_seeded_and_disjoint():
    holdout = np.zeros(100, dtype=bool)
    holdout[::4] = True
    a = training.split_samples(100, holdout, 0.1, seed=1)
    b = training.split_samples(100, holdout, 0.1, seed=1)
    c = training.split_samples(100, holdout, 0.1, seed=2)
    np.testing.assert_array_equal(a.val, b.val)
    assert not np.array_equal(a.val, c.val)
    assert len(a.val) == 8 and len(a.train) == 67 and set(a.holdout) == set(np.flatnonzero(holdout))
    assert not (set(a.train) & set(a.val)) and not ((set(a.train) | set(a.val)) & set(a.holdout))
    with pytest.raises(InputError, match="nothing to train on"):
        training.split_samples(3, np.ones(3, dtype=bool), 0.1, 0)


def test_holdout_file_with_unknown_id(tmp_path):
    path = tmp_path / "h.txt"
    path.write_text("A\nZ\n")
    with pytest.raises(InputError, match=r"h.txt: 1 id\(s\) are not in the store.*'Z'"):
        holdout.holdout_mask(path, np.array(["A", "B"]))


def test_usable_bins_and_pattern_targets():
    x = np.log2(np.array([[100, 0, 100, 200], [200, 1, 200, 400], [50, 0, 100, 100]], dtype=np.float64) / 100 + 1)
    x = x.astype(np.float32)
    medians = np.ones(3) * 100
    usable = training.usable_bins(x, medians, np.arange(3), low_cov_threshold=10)
    assert usable.tolist() == [True, False, True, True]
    pattern, block_bins = training.pattern_targets(x, np.arange(3), usable, n_blocks=2)
    assert pattern.shape == (3, 2) and block_bins.tolist() == [1.0, 2.0]
    profile = np.median(x, axis=0)
    np.testing.assert_allclose(pattern[:, 1], (x[:, 2:] - profile[2:]).mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(pattern[:, 0], x[:, 0] - profile[0], rtol=1e-6)


def test_holdout_and_validation_samples_never_in_a_training_batch(cohort, tmp_path, monkeypatch):
    seen = []
    original = training.iter_batches

    def recording(indices, batch_size, generator):
        for rows in original(indices, batch_size, generator):
            seen.extend(rows.tolist())
            yield rows

    monkeypatch.setattr(training.loop, "iter_batches", recording)
    params = make_params(cohort, tmp_path / "out", epochs=2)
    training.train_vae(params, progress=False, log=lambda m: None)
    split = pd.read_csv(params.out_path / "split.tsv", sep="\t")
    ids = store.open_store(params.store_path).sample_ids
    trained_ids = set(ids[np.unique(seen)])
    assert trained_ids == set(split.loc[split["split"] == "train", "sample_id"])
    assert not trained_ids & set(ids[:N_HOLDOUT])
    assert len(seen) == 2 * 38


def _state(out: Path) -> dict:
    return torch.load(out / "checkpoint_last.pth", weights_only=True)["model"]


def test_same_seed_gives_same_artefacts(cohort, tmp_path, trained):
    params, _ = trained
    again = make_params(cohort, tmp_path / "out")
    training.train_vae(again, progress=False, log=lambda m: None)
    for name in ("latents.npy", "reconstructions.npy", "medians.npy"):
        np.testing.assert_array_equal(np.load(again.out_path / name), np.load(params.out_path / name))
    a, b = training.load_training_log(again.out_path), training.load_training_log(params.out_path)
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))
    other = make_params(cohort, tmp_path / "other", seed=7)
    training.train_vae(other, progress=False, log=lambda m: None)
    assert not np.array_equal(np.load(other.out_path / "latents.npy"), np.load(params.out_path / "latents.npy"))


def test_sigterm_then_resume_matches_uninterrupted_run(cohort, tmp_path, trained, monkeypatch):
    params, _ = trained
    resumed = make_params(cohort, tmp_path / "out")
    original = training.iter_batches
    calls = {"epoch": 0}

    def terminating(indices, batch_size, generator):
        calls["epoch"] += 1
        for i, rows in enumerate(original(indices, batch_size, generator)):
            if calls["epoch"] == 4 and i == 1:
                os.kill(os.getpid(), signal.SIGTERM)  # as Slurm pre-emption would, mid-epoch
            yield rows

    monkeypatch.setattr(training.loop, "iter_batches", terminating)
    with pytest.raises(training.TrainingInterrupted, match="SIGTERM during epoch 4") as info:
        training.train_vae(resumed, progress=False, log=lambda m: None)
    assert info.value.exit_code != 0
    assert torch.load(resumed.out_path / "checkpoint_last.pth", weights_only=True)["epoch"] == 3
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))
    monkeypatch.setattr(training.loop, "iter_batches", original)
    messages = []
    result = training.train_vae(resumed, progress=False, log=messages.append)
    assert any("resuming from checkpoint_last.pth after epoch 3" in m for m in messages)
    assert result.summary["resumed_from_epoch"] == 4
    for key, value in _state(params.out_path).items():
        torch.testing.assert_close(_state(resumed.out_path)[key], value, rtol=0, atol=0)
    np.testing.assert_array_equal(np.load(resumed.out_path / "latents.npy"), np.load(params.out_path / "latents.npy"))
    log = training.load_training_log(resumed.out_path)
    assert log["epoch"].tolist() == list(range(1, 7))


def test_changed_params_train_afresh(cohort, tmp_path, trained):
    params, _ = trained
    out = tmp_path / "out"
    out.mkdir()
    (out / "checkpoint_last.pth").write_bytes((params.out_path / "checkpoint_last.pth").read_bytes())
    messages = []
    changed = make_params(cohort, out, lr=2e-3)
    result = training.train_vae(changed, progress=False, log=messages.append)
    assert any("training afresh" in m for m in messages) and result.summary["resumed_from_epoch"] is None
    assert result.summary["epochs_run"] == 6


def test_early_stopping_waits_for_warmup(cohort, tmp_path, monkeypatch):
    # validation loss that only gets worse: the best epoch is the first after warm-up
    losses = itertools.count(1.0)
    monkeypatch.setattr(training.loop, "_validate", lambda *args: next(losses))
    params = make_params(cohort, tmp_path / "out", epochs=20, patience=2)
    result = training.train_vae(params, progress=False, log=lambda m: None)
    assert result.summary["best_epoch"] == training.warmup_end(params) == 4
    assert result.summary["stopped_early"] and result.summary["epochs_run"] == 6


@pytest.mark.parametrize("aux", ["sin2", "none"])
def test_other_aux_losses_run(cohort, tmp_path, aux):
    params = make_params(cohort, tmp_path / "out", epochs=2, aux_loss=aux)
    result = training.train_vae(params, progress=False, log=lambda m: None)
    log = training.load_training_log(params.out_path)
    assert (log["aux"] > 0).all() == (aux == "sin2")
    assert result.summary["model"]["aux_n_blocks"] == 0


def test_latent_pca_table_keeps_samples_without_metadata(trained):
    params, _ = trained
    table, explained = training.latent_pca_table(params)
    assert len(table) == N_SAMPLES and list(table["sample_id"]) == list(store.open_store(params.store_path).sample_ids)
    assert (table["Species"] == "unknown").sum() == 5
    assert (table["ST"] == "unknown").sum() == 5 + (N_SAMPLES - 5 + 1) // 2
    assert explained.shape == (2,) and 0 < explained.sum() <= 1


def test_sigterm_exits_non_zero_in_a_batch_job(cohort, tmp_path):
    params = make_params(cohort, tmp_path / "out", epochs=500)
    code = ("import sys; from cnvrock_lib.params import load_params; from cnvrock_lib import training\n"
            f"p = load_params({str(params.source)!r})\n"
            "try:\n    training.train_vae(p)\nexcept training.TrainingInterrupted as e:\n"
            "    print(e, file=sys.stderr); sys.exit(e.exit_code)\n")
    env = dict(os.environ, CNVROCK_BATCH="1")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (params.out_path / "checkpoint_last.pth").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "epoch 1/500" in err and "SIGTERM" in err
    assert torch.load(params.out_path / "checkpoint_last.pth", weights_only=True)["epoch"] >= 1


def test_report_helpers(trained):
    params, result = trained
    table = training.summary_table(result.summary)
    assert "38 train, 4 validation, 6 hold-out" in table.loc["samples", "value"]
    errors = training.reconstruction_error(params)
    assert list(errors.columns) == ["sample_id", "split", "median_abs_log2", "noise_sd", "excess_score"]
    assert len(errors) == N_SAMPLES and errors["median_abs_log2"].between(0, 1).all()
    # the synthetic amplicon (4x at bins 300-309) is the strongest local excess, and is not reproduced
    amplified = errors["excess_score"].idxmax()
    counts = np.asarray(store.open_store(params.store_path).counts[amplified], dtype=float)
    assert counts[300:310].mean() > 3 * np.median(counts[320:400])
    tracks = training.example_tracks(params, errors)
    assert tracks["sample_ids"][-1] == errors.loc[amplified, "sample_id"]
    assert tracks["observed"].shape == tracks["expected"].shape == (len(tracks["sample_ids"]), N_BINS)
    assert "hold" in tracks["labels"][0]
    from cnvrock_lib.plots import training as plots
    import matplotlib
    matplotlib.use("Agg")
    log = training.load_training_log(params.out_path)
    for fig in (plots.loss_curves(log, result.summary["best_epoch"]), plots.reconstruction_examples(tracks),
                plots.latent_pca(*training.latent_pca_table(params))):
        assert len(fig.axes) >= 2
        matplotlib.pyplot.close(fig)


def test_gene_neighbourhood_is_left_out_of_the_loss_when_asked(cohort, tmp_path):
    """vae_gene_mask_padding: bins within ± padding of a panel gene carry no reconstruction loss."""
    panel = tmp_path / "panel.tsv"
    pd.DataFrame({"gene": ["g1"], "contig": ["chr"], "start": [300_401], "end": [301_300]}).to_csv(
        panel, sep="\t", index=False)
    bins = store.open_store(cohort / "store").bins
    genes = reference.load_gene_panel(panel).genes
    near = geometry.gene_neighbourhood_bins(bins, genes, 5_000)
    assert np.flatnonzero(near).tolist() == list(range(295, 307))   # 295,401-306,300 bp, by overlap
    assert not geometry.gene_neighbourhood_bins(bins, genes, 0).any()
    plain = training.train_vae(make_params(cohort, tmp_path / "plain", epochs=1, vae_gene_mask_padding=0),
                               progress=False, log=lambda m: None)
    masked = training.train_vae(make_params(cohort, tmp_path / "masked", epochs=1, chrom_gene_coords_path=str(panel),
                                         vae_gene_mask_padding=5_000), progress=False, log=lambda m: None)
    assert masked.summary["n_masked_bins"] == plain.summary["n_masked_bins"] + 12
    assert masked.summary["params_hash"] != plain.summary["params_hash"]
    assert "gene_fill" not in plain.summary          # no neighbourhood (padding 0): nothing to fill


def test_gene_fill_sets_the_neighbourhood_from_the_flank_without_retraining(cohort, tmp_path):
    """vae_gene_fill: same training as the mask alone; the amplicon at bins 300-309 keeps its 4x copy ratio."""
    panel = tmp_path / "panel.tsv"
    pd.DataFrame({"gene": ["g1"], "contig": ["chr"], "start": [300_401], "end": [301_300]}).to_csv(
        panel, sep="\t", index=False)
    common = {"chrom_gene_coords_path": str(panel), "vae_gene_mask_padding": 12_000}
    masked = training.train_vae(make_params(cohort, tmp_path / "out", vae_gene_fill="none", **common),
                                progress=False, log=lambda m: None)
    decoded = np.load(masked.reconstructions)
    lines = []
    filled = training.train_vae(make_params(cohort, tmp_path / "out", vae_gene_fill="observed", **common),
                                progress=False, log=lines.append)
    assert any("resuming" in line for line in lines)           # the fill does not change the training
    assert filled.summary["gene_fill"] == {"mode": "observed", "bins_per_sample": 26}   # bins 288-313
    assert "gene_fill" not in masked.summary
    assert "26 gene-neighbourhood bins filled" in training.summary_table(filled.summary).loc["bins", "value"]
    recon = np.load(filled.reconstructions)
    near = np.zeros(N_BINS, bool)
    near[288:314] = True
    np.testing.assert_array_equal(recon[:, ~near], decoded[:, ~near])
    assert not np.array_equal(recon[:, near], decoded[:, near])
    counts = np.asarray(store.open_store(cohort / "store").counts, dtype=float)
    ratio = counts / np.maximum(recon, 1e-9)
    amplified = counts[:, 300:310].mean(axis=1) > 2.5 * np.median(counts[:, 320:400], axis=1)
    assert amplified.sum() >= 2
    # copy ratios in the filled bins: about 4 at the amplicon of its carriers, about 1 elsewhere in the neighbourhood
    amplicon, beside = np.median(ratio[:, 300:310], axis=1), np.median(ratio[:, 289:299], axis=1)
    assert np.all(np.abs(amplicon[amplified] - 4.0) < 0.4) and np.all(np.abs(amplicon[~amplified] - 1.0) < 0.15)
    assert np.all(np.abs(beside - 1.0) < 0.15)


def test_one_holdout_parser_for_training_and_evaluation(tmp_path):
    """Stage 01 and stage 04 read the same hold-out set, trailing ``# comments`` included (was: two parsers)."""
    path = tmp_path / "holdout.txt"
    path.write_text("# hold-out samples\nA  # first\n\nC\n")
    ids = np.array(["A", "B", "C"])
    assert holdout.read_holdout_ids(path) == ["A", "C"]
    assert holdout.holdout_mask(path, ids).tolist() == [True, False, True]
