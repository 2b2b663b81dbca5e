"""Stage 01, training the Conv-VAE (SPEC §5), scvi-tools style:

- :mod:`.data` — sample split, normalised depth, bins kept in the loss, pattern targets, batches;
- :mod:`.plan` — loss-weight schedules and the params that define a run;
- :mod:`.loop` — an epoch, the validation loss, the training-data identity;
- :mod:`.checkpoints` — save/load, the trained model, encoding every sample;
- :mod:`.runtime` — threads, determinism, SIGTERM, progress output;
- :mod:`.stage` — the driver :func:`train_vae` (reads the store, writes the artefacts);
- :mod:`.report` — tables for the stage-01 report.
"""

from .checkpoints import encode_and_reconstruct, load_model, model_config_from_params
from .data import (Split, block_assignment, iter_batches, normalised_depth, pattern_targets, split_samples,
                   usable_bins)
from .plan import TRAIN_KEYS, aux_weight_at, beta_at, warmup_end
from .report import (LOG_COLUMNS, example_tracks, latent_pca_table, load_train_summary, load_training_log,
                     reconstruction_error, summary_table, training_log_frame)
from .runtime import TrainingInterrupted, _torch_settings, thread_count
from .stage import TrainResult, train_vae

__all__ = ["LOG_COLUMNS", "TRAIN_KEYS", "Split", "TrainResult", "TrainingInterrupted", "aux_weight_at", "beta_at",
           "block_assignment", "encode_and_reconstruct", "example_tracks", "iter_batches", "latent_pca_table",
           "load_model", "load_train_summary", "load_training_log", "model_config_from_params", "normalised_depth",
           "pattern_targets", "reconstruction_error", "split_samples", "summary_table", "thread_count",
           "train_vae", "training_log_frame", "usable_bins", "warmup_end", "_torch_settings"]
