"""Fused kernels (i2vgen_core.speed.kernels): Triton under its CPU interpreter and the torch fallback match the torch ops;
the fused-kernel lever and the temporal layers' layout changes keep the network's numbers and drop layout copies."""

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from helpers import inputs_for, random_unet
from i2vgen_core.speed import kernels, levers

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                  reason="triton is not installed (pip install -c constraints.txt triton)")
IMPLS = [pytest.param("triton", marks=needs_triton), "torch"]
TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


@pytest.fixture
def impl(request, monkeypatch):
    """Run kernels.* through the Triton interpreter ("triton") or the torch fallback ("torch")."""
    monkeypatch.setenv("TRITON_INTERPRET", "1" if request.param == "triton" else "0")
    if request.param == "torch":
        monkeypatch.setattr(kernels, "triton_available", lambda: False)
    return request.param


def reference_norm(video5, groups, weight, bias, silu):
    """[B, F, C, H, W] -> GroupNorm per clip over (C/G, F, H, W) in fp64, as [B, F, C, H*W]."""
    b, f, c, h, w = video5.shape
    out = F.group_norm(video5.double().transpose(1, 2), groups, weight.double() if weight is not None else None,
                       bias.double() if bias is not None else None, 1e-6)
    out = F.silu(out) if silu else out
    return out.transpose(1, 2).reshape(b, f, c, h * w)


@pytest.mark.parametrize("impl", IMPLS, indirect=True)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "tokens_out"])
def test_video_group_norm_matches_group_norm(impl, dtype, layout):
    torch.manual_seed(0)
    b, f, c, h, w, g = 2, 3, 16, 4, 5, 4
    frames_first = (torch.randn(b * f, c, h, w) * 2 + 0.5).to(dtype)
    weight, bias = torch.randn(c).to(dtype), torch.randn(c).to(dtype)
    ref = reference_norm(frames_first.view(b, f, c, h, w), g, weight, bias, silu=True)
    x = frames_first
    out = None
    if layout == "channels_last":
        x = frames_first.contiguous(memory_format=torch.channels_last)
    if layout == "tokens_out":  # the temporal transformer's [B, H*W, F, C] tokens written directly
        out = torch.full((b, h * w, f, c), float("nan"), dtype=dtype).permute(0, 2, 3, 1)
    y = kernels.video_group_norm_out(x.view(b, f, c, h * w), g, weight, bias, 1e-6, silu=True, out=out, split=3)
    assert y.dtype == dtype and not y.isnan().any()
    if out is not None:
        assert y.data_ptr() == out.data_ptr()
    torch.testing.assert_close(y.double(), ref, atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("impl", IMPLS, indirect=True)
@pytest.mark.parametrize("split", [1, 2, 7])
def test_video_group_norm_no_affine_no_silu_any_split(impl, split):
    x = torch.randn(1, 4, 8, 9) * 5 + 3  # [N, F, C, S], a large mean (the chunk shift keeps the variance exact)
    ref = reference_norm(x.view(1, 4, 8, 9, 1), 2, None, None, silu=False)
    y = kernels.video_group_norm_out(x, 2, None, None, 1e-6, silu=False, split=split)
    torch.testing.assert_close(y.double(), ref, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("impl", IMPLS, indirect=True)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_geglu_matches_torch(impl, dtype):
    h = torch.randn(3, 5, 2 * 40).to(dtype)
    value, gate = h.double().chunk(2, -1)
    torch.testing.assert_close(kernels.geglu(h).double(), value * F.gelu(gate), atol=TOL[dtype] * 4,
                               rtol=TOL[dtype])


@pytest.mark.parametrize(("impl", "channels_last"), [("torch", False), ("torch", True),
                                                     pytest.param("triton", True, marks=needs_triton)],
                         indirect=["impl"])
def test_fused_kernels_lever_keeps_the_numbers(impl, channels_last):
    # the interpreter runs every Triton program in Python: one small network, channels-last (the module tests
    # above cover the NCHW layouts)
    small = dict(block_channels=(32, 64), attention_levels=(True, False), norm_groups=8) if impl == "triton" else {}
    unet = random_unet("i2vgen_xl", **small)
    x, t, kw = inputs_for(unet, frames=2 if small else 3, h=4 if small else 8, w=4 if small else 12)
    ref = unet(x, t, **kw)
    levers.set_channels_last(unet, channels_last)
    levers.set_fused_kernels(unet, True)
    torch.testing.assert_close(unet(x, t, **kw), ref, atol=2e-6, rtol=1e-5)
    levers.set_fused_kernels(unet, False)
    torch.testing.assert_close(unet(x, t, **kw), ref, atol=2e-6, rtol=1e-5)


def layout_copies(fn) -> int:
    """How many non-scalar aten::copy_ calls (layout copies, casts) `fn` makes, from the CPU profiler."""
    from torch.profiler import profile

    with profile(record_shapes=True) as prof:
        fn()
    return sum(1 for e in prof.events() if e.name == "aten::copy_" and e.input_shapes and e.input_shapes[0])


def test_temporal_layers_make_no_layout_copies_with_fused_kernels(monkeypatch):
    from i2vgen_core.network.layers import TemporalConv, TemporalTransformer

    monkeypatch.setenv("TRITON_INTERPRET", "0")  # the torch fallback's copies (the interpreter copies on its own)
    torch.manual_seed(0)
    conv, tt = TemporalConv(32, 8).eval(), TemporalTransformer(32, 2, 16, 8).eval()
    x = torch.randn(2 * 4, 32, 6, 7)
    with torch.no_grad():
        plain_conv, plain_tt = conv(x, 4), tt(x, None, 4)
        copies_plain = layout_copies(lambda: conv(x, 4)), layout_copies(lambda: tt(x, None, 4))
        levers.set_fused_kernels(conv)
        levers.set_fused_kernels(tt)
        torch.testing.assert_close(conv(x, 4), plain_conv, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(tt(x, None, 4), plain_tt, atol=1e-6, rtol=1e-5)
        copies_fused = layout_copies(lambda: conv(x, 4)), layout_copies(lambda: tt(x, None, 4))
    assert copies_fused[0] == 0  # norm reads the frames-first trunk, writes the Conv3d layout; the add un-permutes
    # the norm reads the trunk and writes the tokens: its transposed input copy and the token permute are gone,
    # only the attention's own copies (q/k/v heads) remain
    assert copies_fused[1] == copies_plain[1] - 2
    assert copies_plain[0] == 1  # the stock GroupNorm on the transposed view copies it once


def test_compile_of_the_fused_path_has_no_graph_breaks():
    """The fused-kernel lever under torch.compile uses the torch fallback (Inductor fuses it), without breaks."""
    import torch._dynamo

    from i2vgen_core.network.layers import TemporalConv, TemporalTransformer

    conv, tt = TemporalConv(32, 8).eval(), TemporalTransformer(32, 2, 16, 8).eval()
    levers.set_fused_kernels(conv)
    levers.set_fused_kernels(tt)
    x = torch.randn(2 * 4, 32, 6, 7)
    for fn, args in ((conv, (x, 4)), (tt, (x, None, 4))):
        explanation = torch._dynamo.explain(fn)(*args)
        assert explanation.graph_break_count == 0, explanation.break_reasons
