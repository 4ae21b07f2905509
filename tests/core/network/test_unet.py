"""Forward-pass behaviour: inputs per variant, the image-branch scale, sizes, attention backends."""

import pytest
import torch

from i2vgen_core.network.attention import Chunked
from i2vgen_core.sizes import check_latent_size, padded_height_ok
from i2vgen_core.speed import levers

from helpers import inputs_for, random_unet


def test_inputs_a_variant_does_not_use_are_rejected():
    unet = random_unet("ms_vid2vid_xl")
    x, t, kw = inputs_for(unet, h=10, w=16)
    with pytest.raises(ValueError, match="does not take image_embedding"):
        unet(x, t, image_embedding=torch.zeros(2, 1024), **kw)
    with pytest.raises(ValueError, match="needs text"):
        unet(x, t)
    i2v = random_unet("i2vgen_xl")
    x, t, kw = inputs_for(i2v)
    kw.pop("fps")
    with pytest.raises(ValueError, match="needs fps"):
        i2v(x, t, **kw)
    with pytest.raises(ValueError, match="image_latent must be"):
        i2v(x, t, **{**kw, "fps": torch.tensor([8, 8]), "image_latent": torch.zeros(2, 4, 3, 3)})
    with pytest.raises(ValueError, match="sample must be"):
        i2v(x[:, :, 0], t, **kw)


def test_image_branch_scale_two_equals_doubled_conv_in_weights():
    unet = random_unet("i2vgen_xl")
    x, t, kw = inputs_for(unet)
    doubled = random_unet("i2vgen_xl")
    doubled.input_blocks[0][0].weight[:, 4:] *= 2
    doubled.image_branch_scale = 1.0
    assert unet.image_branch_scale == 2.0
    torch.testing.assert_close(unet(x, t, **kw), doubled(x, t, **kw), atol=1e-5, rtol=1e-5)


def test_scalar_timestep_and_single_frame():
    unet = random_unet("ms_image2video")
    x, _, kw = inputs_for(unet, batch=1, frames=1)
    assert unet(x, 500, **kw).shape == x.shape


def test_vid2vid_heights():
    assert padded_height_ok(90)  # 720p
    assert not padded_height_ok(88)  # 704p does not round-trip through the padded downsampling
    unet = random_unet("ms_vid2vid_xl")
    with pytest.raises(ValueError, match="nearest height that works"):
        check_latent_size(unet.config, 88, 160)
    x, t, kw = inputs_for(unet, h=10, w=16)
    assert unet(x, t, **kw).shape == x.shape


@pytest.mark.parametrize("variant", ["i2vgen_xl", "ms_vid2vid_xl"])
def test_attention_backends_agree(variant):
    unet = random_unet(variant)
    x, t, kw = inputs_for(unet, h=10, w=16)
    unet.set_attention_backend("sdpa")
    ref = unet(x, t, **kw)
    assert unet.set_attention_backend(Chunked(512)) == "chunked"  # small: both batch- and query-slicing paths
    out = unet(x, t, **kw)
    assert (out - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max().item())


def test_xformers_backend_needs_cuda_and_package():
    unet = random_unet("ms_vid2vid_xl")
    with pytest.raises(ValueError, match="xformers"):
        unet.set_attention_backend("xformers")
    with pytest.raises(ValueError, match="unknown attention backend"):
        unet.set_attention_backend("flash9")


def test_chunked_attention_matches_sdpa_directly():
    from i2vgen_core.network.attention import chunked_attention
    q, k, v = (torch.randn(7, 3, 33, 8) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    for limit in (10 ** 9, 3 * 33 * 33, 100):
        torch.testing.assert_close(chunked_attention(q, k, v, max_elements=limit), ref, atol=1e-6, rtol=1e-5)


def test_speed_levers_keep_the_numbers():
    from i2vgen_core import export_state_dict, load_unet
    unet = random_unet("i2vgen_xl")
    x, t, kw = inputs_for(unet)
    ref = unet(x, t, **kw)
    levers.set_fused_projections(unet, False)
    torch.testing.assert_close(unet(x, t, **kw), ref, atol=1e-6, rtol=1e-5)
    levers.set_fused_projections(unet, True)
    levers.set_channels_last(unet, True)
    torch.testing.assert_close(unet(x, t, **kw), ref, atol=1e-6, rtol=1e-5)
    levers.set_channels_last(unet, False)
    fp8 = load_unet(export_state_dict(unet, "vgen"), dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    assert fp8.weight_dtype == torch.float8_e4m3fn and fp8.dtype == torch.float32
    err = (fp8(x, t, **kw) - ref).abs().max() / ref.abs().max()
    assert err < 0.1  # fp8 storage rounds each weight to 3 mantissa bits


def test_compile_blocks_keeps_the_numbers():
    """Regional torch.compile (opt-in speed lever) compiles every block in place and changes nothing numerically."""
    unet = random_unet("ms_vid2vid_xl", block_channels=(32, 64), attention_levels=(True, False))
    x, t, kw = inputs_for(unet, h=10, w=16)
    ref = unet(x, t, **kw)
    assert levers.compile_blocks(unet, dynamic=False) == 25
    torch.testing.assert_close(unet(x, t, **kw), ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="before compile_blocks"):
        levers.set_channels_last(unet, True)
    assert set(unet.state_dict()) == set(random_unet("ms_vid2vid_xl", block_channels=(32, 64),
                                                     attention_levels=(True, False)).state_dict())
