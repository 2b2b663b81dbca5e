"""ConvVAE shapes for any number of bins, and the named loss parts."""

import math

import numpy as np
import pytest
import torch

from cnvrock_lib.errors import ParamsError
from cnvrock_lib.model import ConvVAE, ModelConfig, conv_padding, vae_loss


@pytest.mark.parametrize("n_bins", [1, 7, 600, 5334])
@pytest.mark.parametrize("kernels,strides", [((9, 9, 9), (4, 4, 4)), ((3, 5, 2), (1, 2, 8)), ((8, 8, 8), (2, 4, 4)),
                                             ((1, 1, 1), (3, 2, 5))])
def test_shapes_for_any_bin_count(n_bins, kernels, strides):
    model = ConvVAE(ModelConfig(n_bins, latent_dim=10, channels=(2, 3, 4), kernels=kernels, strides=strides,
                                aux_n_blocks=5))
    x = torch.rand(3, n_bins)
    x_hat, mu, logvar = model(x)
    assert x_hat.shape == (3, n_bins) and x_hat.dtype == torch.float32
    assert mu.shape == logvar.shape == (3, 10)
    assert model.padded_bins % math.prod(strides) == 0 and model.padded_bins >= n_bins
    assert model.align_head(mu).shape == (3, 5)


def test_even_kernel_with_stride_one_is_refused():
    with pytest.raises(ParamsError, match="kernel 4 with stride 1"):
        conv_padding(4, 1)


def test_eval_mode_decodes_mu_and_training_mode_samples():
    torch.manual_seed(0)
    model = ConvVAE(ModelConfig(50, latent_dim=4, channels=(2, 2, 2)))
    x = torch.rand(2, 50)
    model.eval()
    a, mu, _ = model(x)
    torch.testing.assert_close(a, model.decode(mu))
    model.train()
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    torch.testing.assert_close(model(x, generator=g1)[0], model(x, generator=g2)[0])
    assert not torch.equal(model(x, generator=torch.Generator().manual_seed(2))[0], a)


def test_baseline_is_added_and_saved():
    model = ConvVAE(ModelConfig(20, latent_dim=2, channels=(2, 2, 2)))
    z = torch.zeros(1, 2)
    before = model.decode(z)
    model.set_baseline(np.full(20, 1.5))
    torch.testing.assert_close(model.decode(z), before + 1.5)
    assert "baseline" in model.state_dict()
    with pytest.raises(ParamsError, match="expected \\(20,\\)"):
        model.set_baseline(np.zeros(3))


def test_config_round_trip():
    cfg = ModelConfig(123, latent_dim=3, channels=(1, 2, 3), kernels=(3, 5, 7), strides=(2, 2, 3), aux_n_blocks=8)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def _parts(x, x_hat, weight, aux_kind="none", beta=1.0, aux_weight=1.0, mu=None, logvar=None, model=None,
           pattern=None, block_bins=None):
    mu = torch.zeros(x.shape[0], 2) if mu is None else mu
    logvar = torch.zeros_like(mu) if logvar is None else logvar
    model = model or ConvVAE(ModelConfig(x.shape[1], latent_dim=2, channels=(2, 2, 2)))
    return vae_loss(model, x, x_hat, mu, logvar, weight, beta, aux_weight, aux_kind, pattern, block_bins)


def test_recon_is_summed_over_unmasked_bins_only():
    x = torch.zeros(2, 4)
    x_hat = torch.tensor([[1.0, 1.0, 1.0, 100.0], [2.0, 0.0, 0.0, -100.0]])
    parts = _parts(x, x_hat, torch.tensor([1.0, 1.0, 1.0, 0.0]))
    assert parts["recon"].item() == pytest.approx((3.0 + 4.0) / 2)


def test_kl_and_total():
    x = torch.zeros(1, 3)
    parts = _parts(x, x, torch.ones(3), mu=torch.tensor([[1.0, 0.0]]), logvar=torch.tensor([[0.0, math.log(2.0)]]),
                   beta=0.5)
    expected_kl = 0.5 * (1.0 + 0.0) + 0.5 * (2.0 - 1.0 - math.log(2.0))
    assert parts["kl"].item() == pytest.approx(expected_kl, rel=1e-6)
    assert parts["aux"].item() == 0.0
    assert parts["total"].item() == pytest.approx(parts["recon"].item() + 0.5 * expected_kl, rel=1e-6)


def test_sin2_is_zero_at_integer_depth_and_penalises_cn2():
    weight = torch.ones(3)
    x = torch.zeros(1, 3)
    cn = lambda c: torch.full((1, 3), math.log2(c + 1.0))  # normalised depth of a CN-c bin  # noqa: E731
    assert _parts(x, cn(1.0), weight, "sin2")["aux"].item() == pytest.approx(0.0, abs=1e-6)
    assert _parts(x, cn(3.0), weight, "sin2")["aux"].item() == pytest.approx(0.0, abs=1e-6)
    assert _parts(x, cn(2.0), weight, "sin2")["aux"].item() > 0.7


def test_align_loss_weights_blocks_by_their_bins():
    model = ConvVAE(ModelConfig(6, latent_dim=2, channels=(2, 2, 2), aux_n_blocks=2))
    with torch.no_grad():
        model.align_head.weight.zero_()
        model.align_head.bias.zero_()
    pattern = torch.tensor([[1.0, 2.0]])
    parts = _parts(torch.zeros(1, 6), torch.zeros(1, 6), torch.ones(6), "align", aux_weight=0.5, model=model,
                   pattern=pattern, block_bins=torch.tensor([3.0, 1.0]))
    assert parts["aux"].item() == pytest.approx(3 * 1.0 + 1 * 4.0)
    assert parts["total"].item() == pytest.approx(0.5 * 7.0)
    with pytest.raises(ParamsError, match="aux_n_blocks"):
        _parts(torch.zeros(1, 6), torch.zeros(1, 6), torch.ones(6), "align")
    with pytest.raises(ParamsError, match="one of align, sin2, none"):
        _parts(torch.zeros(1, 6), torch.zeros(1, 6), torch.ones(6), "integer")
