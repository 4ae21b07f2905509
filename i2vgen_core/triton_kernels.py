"""Triton kernels behind `i2vgen_core.kernels` (imported only when triton is installed and a kernel is used).

`triton.jit` reads TRITON_INTERPRET when it decorates: `kernels` reloads this module when that mode changes.
"""

import os

import triton
import triton.language as tl

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _offsets(e, F_, CG, S, g, s_f, s_c, s_s, CHANNEL_INNER: tl.constexpr):
    # flat index e inside one (clip, group) -> element offset (without the clip term) and channel index
    if CHANNEL_INNER:  # e = (f * S + s) * CG + c
        c = e % CG
        r = e // CG
        s = r % S
        f = r // S
    else:  # e = (f * CG + c) * S + s
        s = e % S
        r = e // S
        c = r % CG
        f = r // CG
    ch = g * CG + c
    return f * s_f + ch * s_c + s * s_s, ch


@triton.jit
def gn_stats_kernel(x_ptr, part_ptr, F_, CG, S, G, SPLIT, chunk,
                    xs_n, xs_f, xs_c, xs_s, CHANNEL_INNER: tl.constexpr, BLOCK: tl.constexpr):
    ng = tl.program_id(0)  # clip * G + group
    sp = tl.program_id(1)  # which chunk of the group
    n = ng // G
    g = ng % G
    total = F_ * CG * S
    start = sp * chunk
    end = tl.minimum(start + chunk, total)
    base = x_ptr + n.to(tl.int64) * xs_n
    off0, _ = _offsets(start, F_, CG, S, g, xs_f, xs_c, xs_s, CHANNEL_INNER)
    shift = tl.load(base + off0, mask=start < total, other=0.0).to(tl.float32)
    s1 = tl.zeros([BLOCK], dtype=tl.float32)
    s2 = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(0, chunk, BLOCK):
        e = start + i + tl.arange(0, BLOCK)
        m = e < end
        off, _ = _offsets(e, F_, CG, S, g, xs_f, xs_c, xs_s, CHANNEL_INNER)
        v = tl.load(base + off, mask=m, other=0.0).to(tl.float32)
        d = tl.where(m, v - shift, 0.0)
        s1 += d
        s2 += d * d
    cnt = tl.maximum(end - start, 0).to(tl.float32)
    t1 = tl.sum(s1, axis=0)
    t2 = tl.sum(s2, axis=0)
    mean = shift + t1 / tl.maximum(cnt, 1.0)
    m2 = tl.maximum(t2 - t1 * t1 / tl.maximum(cnt, 1.0), 0.0)
    p = part_ptr + (ng * SPLIT + sp) * 3
    tl.store(p, cnt)
    tl.store(p + 1, mean)
    tl.store(p + 2, m2)


@triton.jit
def gn_apply_kernel(x_ptr, y_ptr, w_ptr, b_ptr, part_ptr, F_, CG, S, G, SPLIT, chunk, eps,
                    xs_n, xs_f, xs_c, xs_s, ys_n, ys_f, ys_c, ys_s,
                    SILU: tl.constexpr, AFFINE: tl.constexpr, CHANNEL_INNER: tl.constexpr,
                    BLOCK: tl.constexpr, PBLOCK: tl.constexpr):
    ng = tl.program_id(0)
    sp = tl.program_id(1)
    n = ng // G
    g = ng % G
    # combine the group's chunk statistics (Chan et al.)
    j = tl.arange(0, PBLOCK)
    pm = j < SPLIT
    p = part_ptr + (ng * SPLIT + j) * 3
    cnt = tl.load(p, mask=pm, other=0.0)
    mu = tl.load(p + 1, mask=pm, other=0.0)
    m2 = tl.load(p + 2, mask=pm, other=0.0)
    total_cnt = tl.sum(cnt, axis=0)
    mean = tl.sum(cnt * mu, axis=0) / total_cnt
    dev = mu - mean
    var = (tl.sum(m2, axis=0) + tl.sum(cnt * dev * dev, axis=0)) / total_cnt
    rstd = 1.0 / tl.sqrt(var + eps)
    total = F_ * CG * S
    start = sp * chunk
    end = tl.minimum(start + chunk, total)
    xb = x_ptr + n.to(tl.int64) * xs_n
    yb = y_ptr + n.to(tl.int64) * ys_n
    for i in range(0, chunk, BLOCK):
        e = start + i + tl.arange(0, BLOCK)
        m = e < end
        xo, ch = _offsets(e, F_, CG, S, g, xs_f, xs_c, xs_s, CHANNEL_INNER)
        yo, _ = _offsets(e, F_, CG, S, g, ys_f, ys_c, ys_s, CHANNEL_INNER)
        v = (tl.load(xb + xo, mask=m, other=0.0).to(tl.float32) - mean) * rstd
        if AFFINE:
            v = v * tl.load(w_ptr + ch, mask=m, other=1.0).to(tl.float32) \
                + tl.load(b_ptr + ch, mask=m, other=0.0).to(tl.float32)
        if SILU:
            v = v / (1.0 + tl.exp(-v))
        tl.store(yb + yo, v.to(y_ptr.dtype.element_ty), mask=m)


@triton.jit
def geglu_kernel(h_ptr, y_ptr, rows, D, BLOCK_D: tl.constexpr):
    r = tl.program_id(0)
    cb = tl.program_id(1)
    cols = cb * BLOCK_D + tl.arange(0, BLOCK_D)
    m = cols < D
    row = h_ptr + r.to(tl.int64) * 2 * D
    value = tl.load(row + cols, mask=m, other=0.0).to(tl.float32)
    gate = tl.load(row + D + cols, mask=m, other=0.0).to(tl.float32)
    out = value * gate * 0.5 * (1.0 + tl.math.erf(gate * 0.7071067811865476))
    tl.store(y_ptr + r.to(tl.int64) * D + cols, out.to(y_ptr.dtype.element_ty), mask=m)
