"""Hook points of the forward pass (i2vgen_core.network.hooks): unchanged output without hooks, every hook called where
documented, attention patches/replacement/injected attention equal to the plain path, FreeU equal to diffusers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import reference_models as rm
from helpers import inputs_for, random_unet
from i2vgen_core import load_unet
from i2vgen_core.network.hooks import ATTENTION_KINDS, ForwardHooks


def _run(unet, hooks=None, size=8, **extra):
    x, t, kw = inputs_for(unet, batch=2, frames=3, h=size, w=size)
    with torch.no_grad():
        return unet(x, t, hooks=hooks, **kw, **extra)


@pytest.fixture(scope="module")
def unet():
    return random_unet("i2vgen_xl")


def sdpa_attention(q, k, v, heads, call):
    """A reference injected attention function on [B, N, heads*dim]."""
    b, n, _ = q.shape
    q, k, v = (t.reshape(b, t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, -1)


def test_no_hooks_and_empty_hooks_are_bit_identical(unet):
    plain = _run(unet)
    assert torch.equal(plain, _run(unet, None))
    assert torch.equal(plain, _run(unet, ForwardHooks()))


def test_block_hooks_see_every_block_in_order(unet):
    seen = []

    def rec(tag):
        def fn(h, hooks):
            seen.append((tag, hooks.position.block))
            return h
        return fn

    def out_hook(h, skip, hooks):
        seen.append(("output", hooks.position.block))
        assert h.shape[0] == skip.shape[0] and h.shape[-2:] == skip.shape[-2:]
        return h, skip

    emb_shapes = []
    hooks = ForwardHooks(embedding=[lambda e, hk: emb_shapes.append(e.shape) or e],
                         input_block=[rec("in")], input_block_after_skip=[rec("after_skip")],
                         middle_block_before=[rec("mid_before")], middle_block_after=[rec("mid_after")],
                         output_block=[out_hook])
    assert torch.equal(_run(unet, hooks), _run(unet))
    n_in, n_out = len(unet.input_blocks), len(unet.output_blocks)
    assert [s for s in seen if s[0] == "in"] == [("in", ("input", i)) for i in range(n_in)]
    assert [s for s in seen if s[0] == "after_skip"] == [("after_skip", ("input", i)) for i in range(n_in)]
    assert ("mid_before", ("middle", 0)) in seen and ("mid_after", ("middle", 0)) in seen
    assert [s for s in seen if s[0] == "output"] == [("output", ("output", i)) for i in range(n_out)]
    assert emb_shapes == [torch.Size([2, unet.config.time_embed_dim])]  # once, per video (before frame sharing)


def test_attention_hooks_distinguish_kinds_and_positions(unet):
    calls = []

    def patch(x, ctx, value, call):
        calls.append((call.kind, call.block, call.transformer_index, x.shape))
        return x, ctx, value

    hooks = ForwardHooks(attn_patch={k: [patch] for k in ATTENTION_KINDS})
    out = _run(unet, hooks)
    torch.testing.assert_close(out, _run(unet), rtol=1e-5, atol=1e-5)
    kinds = {c[0] for c in calls}
    assert kinds == {"self", "cross", "temporal"}
    spatial = [c for c in calls if c[0] == "self"]
    # ComfyUI's transformer_index: a running count of spatial transformers, one self-attention each
    assert [c[2] for c in spatial] == list(range(len(spatial)))
    assert spatial[0][3][0] == 2 * 3  # spatial tokens are per frame [B*F, H*W, C]
    temporal = [c for c in calls if c[0] == "temporal"]
    assert temporal[0][3][1] == 3  # temporal tokens [B*H*W, F, C]
    middle = [c for c in spatial if c[1] == ("middle", 0)]
    assert len(middle) == 1


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_replace_and_output_patch_take_effect(unet, kind):
    """A replacement equal to attention gives the same output; a zeroing output patch changes it."""
    same = ForwardHooks(attn_replace=lambda call: sdpa_attention if call.kind == kind else None)
    torch.testing.assert_close(_run(unet, same), _run(unet), rtol=1e-5, atol=1e-5)
    zero = ForwardHooks(attn_output_patch={kind: [lambda out, call: out * 0]})
    assert (_run(unet, zero) - _run(unet)).abs().max() > 1e-4


def test_replace_by_block_only_hits_that_block(unet):
    hit = []

    def replace(call):
        if call.kind == "self" and call.block == ("middle", 0):
            def fn(q, k, v, heads, c):
                hit.append(c.block)
                return v  # "perturbed" attention: identity, as PAG does
            return fn
        return None

    out = _run(unet, ForwardHooks(attn_replace=replace), size=16)  # 2x2 middle tokens: attention is not identity
    assert hit == [("middle", 0)] and not torch.allclose(out, _run(unet, size=16))


def test_injected_attention_equals_builtin(unet):
    used = set()

    def attn(q, k, v, heads, call):
        used.add(call.kind)
        return sdpa_attention(q, k, v, heads, call)

    torch.testing.assert_close(_run(unet, ForwardHooks(attention=attn)), _run(unet), rtol=1e-5, atol=1e-5)
    assert used == {"self", "cross", "temporal"}


def test_after_self_attention_and_image_anchor(unet):
    changed = _run(unet, ForwardHooks(after_self_attention=[lambda x, hk: x * 1.5]))
    assert not torch.allclose(changed, _run(unet))
    assert not torch.allclose(_run(unet, image_anchor=False), _run(unet))


# ----------------------------------------------------------------------------------------------- FreeU
@pytest.mark.skipif(rm.diffusers_i2vgen_unet_class() is None, reason="diffusers with I2VGenXLUNet not installed")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_freeu_equals_diffusers(tmp_path, dtype):
    ref = rm.build_diffusers_unet(rm.DIFFUSERS_REAL_SHAPED_CONFIG, seed=7)
    ref.save_pretrained(tmp_path / "unet", safe_serialization=True)
    ours = load_unet(tmp_path / "unet").to(dtype).eval()
    ours.image_branch_scale = 1.0
    ref = ref.to(dtype)
    g = torch.Generator().manual_seed(3)
    dim = rm.DIFFUSERS_REAL_SHAPED_CONFIG["cross_attention_dim"]
    x = torch.randn(1, 4, 3, 16, 16, generator=g, dtype=dtype)
    kw = dict(text=torch.randn(1, 77, dim, generator=g, dtype=dtype),
              image_embedding=torch.randn(1, dim, generator=g, dtype=dtype),
              image_latent=torch.randn(1, 4, 16, 16, generator=g, dtype=dtype), fps=torch.tensor([16]))
    t = torch.tensor([500])
    plain = rm.run_diffusers_unet(ref, x, t, **kw)
    ref.enable_freeu(s1=0.9, s2=0.2, b1=1.2, b2=1.4)
    ours.enable_freeu(s1=0.9, s2=0.2, b1=1.2, b2=1.4)
    expected = rm.run_diffusers_unet(ref, x, t, **kw)
    with torch.no_grad():
        got = ours(x, t, **kw)
    scale = max(1.0, expected.abs().max().item())
    # diffusers runs its Fourier filter in fp32 whatever the dtype, so float64 agrees to fp32 rounding only
    tol = 1e-5 if dtype == torch.float32 else 1e-6
    assert (got - expected).abs().max().item() <= tol * scale
    assert (expected - plain).abs().max().item() > 1e-3 * scale  # FreeU changed the output
    ours.disable_freeu()
    with torch.no_grad():
        assert (ours(x, t, **kw) - plain).abs().max().item() <= tol * scale
