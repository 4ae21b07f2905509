"""Speed levers on the CPU: regional compile without graph breaks or recompiles, the attention backends
(batched matmul, FlexAttention, SageAttention's error when missing), fp8 compute by emulation, CUDA graphs, and
speed.levers switching them from outside (class swaps only, one order for all)."""

import dataclasses
import importlib.util

import pytest
import torch

from helpers import inputs_for, random_unet
from i2vgen_core.network.attention import attention, resolve_backend
from i2vgen_core.speed import levers


@pytest.mark.slow
def test_regional_compile_no_graph_breaks_no_recompiles_across_steps_and_cfg_batches():
    """CPU Inductor: after the first call of each batch size (CFG batch 2, cond/uncond alone 1), further steps with
    new timesteps and latents compile nothing; no block breaks its graph."""
    import torch._dynamo.utils

    torch._dynamo.reset()
    unet = random_unet("ms_vid2vid_xl", block_channels=(32, 64), attention_levels=(True, False))
    x, t, kw = inputs_for(unet, h=10, w=16)
    levers.compile_blocks(unet, dynamic=False)
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
    from i2vgen_core.speed.fp8 import enable_fp8_compute

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
    changed = levers.set_fp8_compute(unet, "row", emulate=True)
    assert changed > 0
    keys = set(unet.state_dict())
    err = ((unet(x, t, **kw).float() - ref).norm() / ref.norm()).item()
    assert err < 0.1, err
    assert levers.set_fp8_compute(unet, None) == changed and set(unet.state_dict()) == keys
    torch.testing.assert_close(unet(x, t, **kw).float(), ref)


def test_cuda_graphs_lever_is_a_no_op_on_cpu():
    unet = random_unet("i2vgen_xl")
    x, t, kw = inputs_for(unet)
    ref = unet(x, t, **kw)
    levers.set_cuda_graphs(unet, True)
    torch.testing.assert_close(unet(x, t, **kw), ref)
    assert not unet.cuda_graphs.graphs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_cuda_graphs_replay_matches_eager_across_steps():
    unet = random_unet("i2vgen_xl").cuda()
    x, t, kw = inputs_for(unet)
    x, t, kw = x.cuda(), t.cuda(), {k: v.cuda() for k, v in kw.items()}
    levers.set_cuda_graphs(unet, True)
    with torch.inference_mode():
        for step in range(3):
            xs, ts = torch.randn_like(x), t - 100 * step
            got = unet(xs, ts, **kw)
            torch.testing.assert_close(got, unet._predict(xs, ts, **kw), atol=1e-4, rtol=1e-4)
    assert len(unet.cuda_graphs.graphs) == 1


def test_fused_kernels_lever_swaps_layer_classes_and_nothing_else():
    """The fused forwards plug in from outside: each layer's class is swapped (and back), its parameters, keys and
    isinstance stay; a host's subclass of a layer keeps its own forward."""
    from i2vgen_core.network.layers import GEGLU, ResBlock, TemporalConv, TemporalTransformer
    from i2vgen_core.speed.fused import FUSED

    unet = random_unet("i2vgen_xl")
    before = {k: v.data_ptr() for k, v in unet.state_dict().items()}
    plain = {name: type(m) for name, m in unet.named_modules()}
    levers.set_fused_kernels(unet)
    swapped = {name: type(m) for name, m in unet.named_modules() if type(m) is not plain[name]}
    assert swapped and all(FUSED[plain[name]] is cls for name, cls in swapped.items())
    assert {plain[name] for name in swapped} == {GEGLU, ResBlock, TemporalConv, TemporalTransformer}
    assert all(isinstance(unet.get_submodule(name), plain[name]) for name in swapped)
    assert {k: v.data_ptr() for k, v in unet.state_dict().items()} == before
    levers.set_fused_kernels(unet, False)
    assert {name: type(m) for name, m in unet.named_modules()} == plain

    class HostGEGLU(GEGLU):
        pass

    host = HostGEGLU(8, 16)
    levers.set_fused_kernels(host)
    assert type(host) is HostGEGLU


def test_apply_levers_switches_in_the_right_order_and_off_again():
    """Layout before compilation (the other order is refused by set_channels_last); levers set off where the
    SpeedLevers say off; compiled blocks stay compiled."""
    from i2vgen_core.speed.fused import FusedResBlock

    unet = random_unet("ms_vid2vid_xl", block_channels=(32, 64), attention_levels=(True, False))
    on = levers.SpeedLevers(attention="chunked", fused_projections=False, channels_last=True, fused_kernels=True,
                            cuda_graphs=True, compile=True)
    assert levers.apply_levers(unet, on) == "chunked"
    assert unet.channels_last and unet.cuda_graphs is not None
    assert isinstance(unet.input_blocks[1][0], FusedResBlock)
    assert not any(m.fused for m in unet.modules() if hasattr(m, "fused"))
    assert unet.input_blocks[1][0]._compiled_call_impl is not None
    with pytest.raises(ValueError, match="before compile_blocks"):
        levers.apply_levers(unet, levers.SpeedLevers())  # channels-last off after compilation
    with pytest.raises(dataclasses.FrozenInstanceError):
        on.compile = False

    fresh = random_unet("i2vgen_xl")
    levers.apply_levers(fresh, levers.SpeedLevers(fused_kernels=True, fp8_compute="tensor"))
    assert levers.apply_levers(fresh, levers.SpeedLevers()) == "sdpa"
    assert set(map(type, fresh.modules())) == set(map(type, random_unet("i2vgen_xl").modules()))


def test_load_unet_applies_its_lever_options():
    from i2vgen_core import export_state_dict, load_unet
    from i2vgen_core.speed.fused import FusedGEGLU
    from i2vgen_core.speed.fp8 import Fp8Linear

    sd = export_state_dict(random_unet("i2vgen_xl"), "vgen")
    unet = load_unet(sd, channels_last=True, fused_kernels=True, fp8_compute="row", fused_projections=False)
    kinds = set(map(type, unet.modules()))
    assert unet.channels_last and FusedGEGLU in kinds and Fp8Linear in kinds
    assert not any(m.fused for m in unet.modules() if hasattr(m, "fused"))
    plain = load_unet(sd)
    assert not plain.channels_last and FusedGEGLU not in set(map(type, plain.modules()))
