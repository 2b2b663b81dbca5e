"""The 1D Conv-VAE of stage 01 (registered as ``architecture: 06_conv_vae``).

Encoder: three strided 1D convolutions over the per-sample bin vector
(normalised log depth, see :mod:`cnvrock_lib.normalise`) and a dense head
giving mu and logvar of the latent. Decoder: a dense layer back to the
feature map, then three transposed convolutions mirroring the encoder, added
to a fixed per-bin baseline (the cohort's median profile). The
input is zero-padded on the right to a multiple of the total stride and the
output cropped back to ``n_bins``, so any number of bins works.

:func:`vae_loss` returns the loss parts by name (``recon``, ``kl``, ``aux``,
``total``) so that training logs and plots can show each term.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .errors import ParamsError

AUX_KINDS = ("align", "sin2", "none")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a :class:`ConvVAE` (stored in checkpoints).

    ``channels``, ``kernels``, ``strides``: per encoder convolution (the decoder
    mirrors them). ``aux_n_blocks``: outputs of the alignment head (regional
    blocks); 0 builds no head.
    """

    n_bins: int
    latent_dim: int = 10
    channels: tuple[int, int, int] = (16, 32, 64)
    kernels: tuple[int, int, int] = (9, 9, 9)
    strides: tuple[int, int, int] = (8, 4, 4)
    aux_n_blocks: int = 0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["channels"], out["kernels"], out["strides"] = list(self.channels), list(self.kernels), list(self.strides)
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> "ModelConfig":
        raw = dict(raw)
        for key in ("channels", "kernels", "strides"):
            raw[key] = tuple(int(v) for v in raw[key])
        return cls(**raw)


def conv_padding(kernel: int, stride: int) -> int:
    """Padding (bins) that makes a convolution map length L·s to exactly L (L any integer).

    Raises ParamsError when no padding can (an even kernel with stride 1).
    """
    pad = max(0, math.ceil((kernel - stride) / 2))
    if 2 * pad > kernel - 1 and kernel >= stride:
        raise ParamsError(f"conv_kernels/conv_strides: kernel {kernel} with stride {stride} cannot keep the "
                          f"length an exact multiple of the stride; use an odd kernel with stride 1")
    return pad


class ConvVAE(nn.Module):
    """1D convolutional VAE over a sample's bins.

    Parameters
    ----------
    config : :class:`ModelConfig` (n_bins, latent_dim, channels, kernels, strides, aux_n_blocks).

    ``forward(x, generator=None)`` takes x of shape (batch, n_bins) (normalised
    log depth) and returns ``(x_hat, mu, logvar)``; in training mode the latent
    is sampled with ``generator`` (reparameterisation), in eval mode z = mu.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.n_bins < 1 or config.latent_dim < 1:
            raise ParamsError(f"ConvVAE needs n_bins >= 1 and latent_dim >= 1, got {config.n_bins}, "
                              f"{config.latent_dim}")
        self.config = config
        self.total_stride = math.prod(config.strides)
        self.padded_bins = math.ceil(config.n_bins / self.total_stride) * self.total_stride
        self.feature_len = self.padded_bins // self.total_stride
        chans = (1,) + tuple(config.channels)
        pads = [conv_padding(k, s) for k, s in zip(config.kernels, config.strides)]
        self.encoder = nn.Sequential()
        for i in range(3):
            self.encoder.append(nn.Conv1d(chans[i], chans[i + 1], config.kernels[i], config.strides[i], pads[i]))
            self.encoder.append(nn.LeakyReLU(0.1))
        flat = chans[3] * self.feature_len
        self.to_stats = nn.Linear(flat, 2 * config.latent_dim)
        self.from_latent = nn.Linear(config.latent_dim, flat)
        self.decoder = nn.Sequential()
        for i in reversed(range(3)):
            k, s, p = config.kernels[i], config.strides[i], pads[i]
            self.decoder.append(nn.ConvTranspose1d(chans[i + 1], chans[i], k, s, p, output_padding=s - k + 2 * p))
            if i > 0:
                self.decoder.append(nn.LeakyReLU(0.1))
        # The decoder learns each sample's deviation from a fixed cohort profile
        # (set by the trainer to the median training profile): training starts
        # from the cohort's shape instead of from zero, which saves many epochs.
        self.register_buffer("baseline", torch.zeros(config.n_bins))
        # Alignment head: a linear map latent -> regional CNV pattern (SPEC §5).
        self.align_head = nn.Linear(config.latent_dim, config.aux_n_blocks) if config.aux_n_blocks > 0 else None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, n_bins) normalised depth -> (mu, logvar), each (batch, latent_dim)."""
        h = F.pad(x, (0, self.padded_bins - x.shape[-1])).unsqueeze(1)
        h = self.encoder(h).flatten(1)
        mu, logvar = self.to_stats(h).chunk(2, dim=1)
        # Bound logvar so exp() cannot overflow early in training.
        return mu, logvar.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(batch, latent_dim) -> x_hat (batch, n_bins), normalised log depth."""
        h = F.leaky_relu(self.from_latent(z), 0.1).view(z.shape[0], self.config.channels[2], self.feature_len)
        return self.decoder(h).squeeze(1)[:, : self.config.n_bins] + self.baseline

    def set_baseline(self, profile) -> None:
        """Set the per-bin baseline (normalised log depth, (n_bins,)) that the decoder adds to its output."""
        profile = torch.as_tensor(profile, dtype=self.baseline.dtype)
        if profile.shape != self.baseline.shape:
            raise ParamsError(f"baseline profile has shape {tuple(profile.shape)}; expected ({self.config.n_bins},)")
        self.baseline.copy_(profile)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        mu, logvar = self.encode(x)
        if self.training:
            # Draw on the generator's device (a seeded CPU generator also serves a CUDA model).
            draw_on = generator.device if generator is not None else mu.device
            eps = torch.randn(mu.shape, generator=generator, device=draw_on, dtype=mu.dtype).to(mu.device)
            z = mu + eps * torch.exp(0.5 * logvar)
        else:
            z = mu
        return self.decode(z), mu, logvar


def vae_loss(model: ConvVAE, x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             bin_weight: torch.Tensor, beta: float, aux_weight: float, aux_kind: str = "align",
             pattern: torch.Tensor | None = None, block_bins: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Loss parts of one batch, each averaged over the samples of the batch.

    Parameters
    ----------
    x, x_hat : (batch, n_bins) observed and reconstructed normalised log depth.
    mu, logvar : (batch, latent_dim).
    bin_weight : (n_bins,) 1 for bins in the loss, 0 for masked (unmappable) bins.
    beta, aux_weight : current schedule weights.
    aux_kind : ``align`` (CNV-pattern alignment), ``sin2`` (integer penalty) or ``none``.
    pattern : (batch, n_blocks) target regional pattern for ``align``.
    block_bins : (n_blocks,) usable bins per block; the alignment error of a block
        counts once per bin so that it is on the scale of ``recon``.

    Returns
    -------
    dict with ``recon`` (squared error summed over usable bins), ``kl`` (nats summed
    over latent dimensions), ``aux`` and ``total = recon + beta·kl + aux_weight·aux``.
    """
    if aux_kind not in AUX_KINDS:
        raise ParamsError(f"aux_loss = {aux_kind!r}; expected one of {', '.join(AUX_KINDS)}")
    recon = (((x_hat - x) ** 2) * bin_weight).sum(dim=1).mean()
    kl = (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()
    if aux_kind == "align":
        if model.align_head is None or pattern is None or block_bins is None:
            raise ParamsError("aux_loss align needs a model built with aux_n_blocks > 0 and a target pattern")
        aux = (((model.align_head(mu) - pattern) ** 2) * block_bins).sum(dim=1).mean()
    elif aux_kind == "sin2":
        # Zero at integer log2 depth (CN 0, 1, 3, 7 ...), maximal near CN 2: it pulls CN 2 away.
        per_sample = ((torch.sin(math.pi * x_hat) ** 2) * bin_weight).sum(dim=1) / bin_weight.sum().clamp_min(1.0)
        aux = per_sample.mean()
    else:
        aux = torch.zeros((), dtype=x.dtype, device=x.device)
    total = recon + beta * kl + aux_weight * aux
    return {"recon": recon, "kl": kl, "aux": aux, "total": total}
