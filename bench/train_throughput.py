"""Training throughput of the Conv-VAE: samples per second at batch 128 on 5,334 bins.

One training step = forward, loss (reconstruction + KL + alignment head), backward,
gradient clipping and an Adam step, with the same torch settings as ``train_vae``
(deterministic algorithms, thread count). Synthetic input: the values do not
change the work. Each configuration is timed over ``--steps`` steps after a warm-up;
the table gives the throughput of the median step and of the fastest step (the
fastest is the least disturbed by other jobs on a shared machine).

The projection is the time of the 5K tier x 150 epochs (5,000 samples per epoch,
training steps only), next to the original's quoted ~4 min on an A40.

Usage: python bench/train_throughput.py [--steps 20] [--all-archs] [--no-docs]
Writes the table between <!-- BEGIN throughput --> and <!-- END throughput --> in
docs/training.md (and prints it).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cnvrock_lib import training  # noqa: E402
from cnvrock_lib.model import ConvVAE, ModelConfig, vae_loss  # noqa: E402
from cnvrock_lib.params import SCHEMA  # noqa: E402
from doc_blocks import write_doc_block  # noqa: E402

N_BINS, BATCH, N_BLOCKS = 5334, 128, 64
TIER_SAMPLES, TIER_EPOCHS, ORIGINAL = 5000, 150, "~4 min (original, A40 GPU, quoted)"
DOC = REPO / "docs" / "training.md"
EXTRA_ARCHS = [((8, 16, 32), (9, 9, 9), (4, 4, 4)), ((16, 32, 64), (9, 9, 9), (4, 4, 4)),
               ((16, 32, 64), (9, 9, 9), (8, 4, 4)), ((8, 16, 32), (9, 9, 9), (8, 4, 2)),
               ((32, 64, 128), (9, 9, 9), (4, 4, 4))]


def step_times(config: ModelConfig, device: torch.device, threads: int, steps: int) -> list[float]:
    """Seconds per training step of batch ``BATCH`` (after 3 warm-up steps)."""
    with training._torch_settings(threads, device):
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        model = ConvVAE(config).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)
        x = (torch.rand(BATCH, config.n_bins, generator=gen) * 2).to(device)
        pattern = torch.randn(BATCH, N_BLOCKS, generator=gen).to(device)
        weight = torch.ones(config.n_bins, device=device)
        block_bins = torch.full((N_BLOCKS,), config.n_bins / N_BLOCKS, device=device)
        times = []
        for i in range(steps + 3):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            x_hat, mu, logvar = model(x, generator=gen)
            parts = vae_loss(model, x, x_hat, mu, logvar, weight, 1.0, 1.0, "align", pattern, block_bins)
            opt.zero_grad(set_to_none=True)
            parts["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 3:
                times.append(time.perf_counter() - t0)
        return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    ap.add_argument("--all-archs", action="store_true", help="also time the architectures of the sweep")
    ap.add_argument("--no-docs", action="store_true", help="print only; do not update docs/training.md")
    args = ap.parse_args(argv)
    default = (tuple(SCHEMA["conv_channels"].default), tuple(SCHEMA["conv_kernels"].default),
               tuple(SCHEMA["conv_strides"].default))
    archs = [default] + ([a for a in EXTRA_ARCHS if a != default] if args.all_archs else [])
    cores = training.thread_count(0)
    devices = [("cpu", t) for t in sorted({1, cores})]
    if torch.cuda.is_available():
        devices.append(("cuda", cores))
    load = os.getloadavg()[0]
    rows = []
    for ch, k, s in archs:
        cfg = ModelConfig(N_BINS, 10, ch, k, s, aux_n_blocks=N_BLOCKS)
        for dev, threads in devices:
            times = step_times(cfg, torch.device(dev), threads, args.steps)
            med, best = statistics.median(times), min(times)
            name = torch.cuda.get_device_name(0) if dev == "cuda" else f"CPU, {threads} thread(s)"
            rows.append((f"{list(ch)} / {list(k)} / {list(s)}" + (" (default)" if (ch, k, s) == default else ""),
                         name, BATCH / med, BATCH / best, TIER_SAMPLES * TIER_EPOCHS * med / BATCH / 60))
            print(rows[-1], flush=True)
    cpu = platform.processor() or platform.machine()
    text = (f"Measured by `python bench/train_throughput.py{' --all-archs' if args.all_archs else ''}` "
            f"({cpu}, {cores} cores, torch {torch.__version__}, load average {load:.1f} at start; "
            f"{args.steps} timed steps of batch {BATCH} on {N_BINS} bins).\n\n"
            "| channels / kernels / strides | device | samples/s (median step) | samples/s (fastest step) "
            f"| projected 5K tier x {TIER_EPOCHS} epochs |\n|---|---|---|---|---|\n")
    text += "".join(f"| {a} | {d} | {m:.0f} | {b:.0f} | {mins:.1f} min |\n" for a, d, m, b, mins in rows)
    text += f"\nFor comparison: {ORIGINAL} for 5K samples x 150 epochs."
    if not torch.cuda.is_available():
        text += " No CUDA device on this machine: GPU throughput not measured here."
    text += "\n"
    print(text)
    if not args.no_docs:
        write_doc_block(DOC, "throughput", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
