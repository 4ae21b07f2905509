"""Speed levers of issue 7 on the CPU: regional compile without graph breaks or recompiles, the attention backends
(batched matmul, FlexAttention, SageAttention's error when missing), fp8 compute by emulation, CUDA graphs."""

import importlib.util

import pytest
import torch

from helpers import inputs_for, random_unet
from i2vgen_core.attention import attention, resolve_backend


@pytest.mark.slow
def test_regional_compile_no_graph_breaks_no_recompiles_across_steps_and_cfg_batches():
    """CPU Inductor: after the first call of each batch size (CFG batch 2, cond/uncond alone 1), further steps with
    new timesteps and latents compile nothing; no block breaks its graph."""
    import torch._dynamo.utils

    torch._dynamo.reset()
    unet = random_unet("ms_vid2vid_xl", block_channels=(32, 64), attention_levels=(True, False))
    x, t, kw = inputs_for(unet, h=10, w=16)
    unet.compile_blocks(dynamic=False)
    counters = torch._dynamo.utils.counters
    counters.clear()
    with torch.no_grad():
        unet(x, t, **kw)
        unet(x[:1], t[:1], **{k: v[:1] for k, v in kw.items()})
        graphs = counters["stats"]["unique_graphs"]
        assert graphs > 0
        for step in range(2):  # later steps: other timesteps and latents, both batch sizes
            unet(torch.randn_like(x), t.flip(0) - step, **kw)
            unet(torch.randn_like(x[:1]), t[:1] - step, **{k: v[:1] for k, v in kw.items()})
    assert counters["stats"]["unique_graphs"] == graphs, dict(counters["stats"])
    assert not counters["graph_break"], dict(counters["graph_break"])
    torch._dynamo.reset()


@pytest.mark.parametrize("n", [3, 16, 80])
def test_bmm_attention_matches_sdpa(n):
    q, k, v = (torch.randn(5, 2, n, 16) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(attention(q, k, v, "bmm"), ref, atol=1e-5, rtol=1e-5)


def test_flex_attention_matches_sdpa():
    pytest.importorskip("torch.nn.attention.flex_attention")
    q, k, v = (torch.randn(3, 2, 16, 16) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(attention(q, k, v, "flex"), ref, atol=1e-5, rtol=1e-5)


def test_new_backends_on_the_network_keep_the_numbers():
    unet = random_unet("i2vgen_xl")
    x, t, kw = inputs_for(unet)
    ref = unet(x, t, **kw)
    for backend in ("bmm", "flex"):
        assert unet.set_attention_backend(backend) == backend
        torch.testing.assert_close(unet(x, t, **kw), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("sageattention") is not None, reason="sageattention is installed")
def test_sage_backend_says_what_is_missing():
    with pytest.raises(ValueError, match="sageattention package is not installed"):
        resolve_backend("sage", "cpu")
    with pytest.raises(RuntimeError, match="pip install sageattention"):
        attention(*(torch.randn(1, 1, 80, 16) for _ in range(3)), backend="sage")


def test_fp8_compute_emulated_error_vs_bf16_on_full_width_layers():
    """The fp8 mode's numerics (emulated on the CPU): relative L2 error of full-width random layers vs bf16."""
    from i2vgen_core.fp8 import enable_fp8_compute

    torch.manual_seed(0)
    errors = {}
    for n_in, n_out in ((1280, 5120), (5120, 1280)):
        layer = torch.nn.Linear(n_in, n_out).to(torch.bfloat16)
        with torch.no_grad():
            layer.weight.normal_(0, n_in ** -0.5)
        x = torch.randn(256, n_in, dtype=torch.bfloat16)
        ref = layer(x).float()
        for scaling in ("tensor", "row"):
            assert enable_fp8_compute(layer, scaling, emulate=True) == 1
            got = layer(x).float()
            assert enable_fp8_compute(layer, None) == 1 and type(layer) is torch.nn.Linear
            errors[(n_in, scaling)] = ((got - ref).norm() / ref.norm()).item()
    print("fp8 rel L2 error vs bf16:", errors)
    # e4m3 keeps 3 mantissa bits: ~2-4 % relative error per product, row scales no worse than one tensor scale
    assert all(0.005 < e < 0.06 for e in errors.values()), errors
    assert errors[(1280, "row")] <= errors[(1280, "tensor")] * 1.05


def test_fp8_compute_lever_on_the_network():
    unet = random_unet("i2vgen_xl").to(torch.bfloat16)
    x, t, kw = inputs_for(unet)
    kw = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in kw.items()}
    x = x.to(torch.bfloat16)
    ref = unet(x, t, **kw).float()
    changed = unet.set_fp8_compute("row", emulate=True)
    assert changed > 0
    keys = set(unet.state_dict())
    err = ((unet(x, t, **kw).float() - ref).norm() / ref.norm()).item()
    assert err < 0.1, err
    assert unet.set_fp8_compute(None) == changed and set(unet.state_dict()) == keys
    torch.testing.assert_close(unet(x, t, **kw).float(), ref)


def test_cuda_graphs_lever_is_a_no_op_on_cpu():
    unet = random_unet("i2vgen_xl")
    x, t, kw = inputs_for(unet)
    ref = unet(x, t, **kw)
    unet.set_cuda_graphs(True)
    torch.testing.assert_close(unet(x, t, **kw), ref)
    assert not unet.cuda_graphs.graphs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_cuda_graphs_replay_matches_eager_across_steps():
    unet = random_unet("i2vgen_xl").cuda()
    x, t, kw = inputs_for(unet)
    x, t, kw = x.cuda(), t.cuda(), {k: v.cuda() for k, v in kw.items()}
    unet.set_cuda_graphs(True)
    with torch.inference_mode():
        for step in range(3):
            xs, ts = torch.randn_like(x), t - 100 * step
            got = unet(xs, ts, **kw)
            torch.testing.assert_close(got, unet._predict(xs, ts, **kw), atol=1e-4, rtol=1e-4)
    assert len(unet.cuda_graphs.graphs) == 1
