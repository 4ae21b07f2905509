"""Triton kernels behind `i2vgen_core.speed.kernels` (imported only when triton is installed and a kernel is used).

`triton.jit` reads TRITON_INTERPRET when it decorates: `kernels` reloads this module when that mode changes.
"""

import os

import triton
import triton.language as tl

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def gn_stats_kernel(x_ptr, part_ptr, S, G, CG, tiles_per_prog, n_tiles, s_tiles, xs_n, xs_f, xs_c, xs_s,
                    CGP: tl.constexpr, BLOCK_S: tl.constexpr):
    """Partial statistics of one (clip, group): program (clip * G + group, chunk) reduces `tiles_per_prog` tiles
    of [group channels, BLOCK_S pixels] (one frame each) to (count, mean, M2), shifted by the group's first value."""
    ng = tl.program_id(0)
    sp = tl.program_id(1)
    n = ng // G
    g = ng % G
    c = tl.arange(0, CGP)
    ch = g * CG + c
    cmask = c < CG
    base = x_ptr + n.to(tl.int64) * xs_n
    shift = tl.load(base + (g * CG).to(tl.int64) * xs_c).to(tl.float32)
    s1 = tl.zeros([CGP, BLOCK_S], dtype=tl.float32)
    s2 = tl.zeros([CGP, BLOCK_S], dtype=tl.float32)
    cnt = tl.zeros([CGP, BLOCK_S], dtype=tl.float32)
    for i in range(0, tiles_per_prog):
        tile = sp * tiles_per_prog + i
        f = tile // s_tiles
        s = (tile % s_tiles) * BLOCK_S + tl.arange(0, BLOCK_S)
        m = cmask[:, None] & (s < tl.where(tile < n_tiles, S, 0))[None, :]
        off = f.to(tl.int64) * xs_f + ch[:, None].to(tl.int64) * xs_c + s[None, :].to(tl.int64) * xs_s
        d = tl.where(m, tl.load(base + off, mask=m, other=0.0).to(tl.float32) - shift, 0.0)
        s1 += d
        s2 += d * d
        cnt += m.to(tl.float32)
    t1 = tl.sum(tl.sum(s1, axis=1), axis=0)
    t2 = tl.sum(tl.sum(s2, axis=1), axis=0)
    k = tl.sum(tl.sum(cnt, axis=1), axis=0)
    safe = tl.maximum(k, 1.0)
    p = part_ptr + (ng * tl.num_programs(1) + sp) * 3
    tl.store(p, k)
    tl.store(p + 1, shift + t1 / safe)
    tl.store(p + 2, tl.maximum(t2 - t1 * t1 / safe, 0.0))


@triton.jit
def gn_apply_kernel(x_ptr, y_ptr, w_ptr, b_ptr, part_ptr, S, G, CG, tiles_per_prog, n_tiles, s_tiles, eps,
                    xs_n, xs_f, xs_c, xs_s, ys_n, ys_f, ys_c, ys_s,
                    SILU: tl.constexpr, AFFINE: tl.constexpr, CGP: tl.constexpr, BLOCK_S: tl.constexpr,
                    PBLOCK: tl.constexpr):
    """Normalise (+ affine, + SiLU) the same tiles, combining the group's partial statistics (Chan et al.);
    reads x's strides and writes y's (Triton moves the tile through shared memory when they differ)."""
    ng = tl.program_id(0)
    sp = tl.program_id(1)
    split = tl.num_programs(1)
    n = ng // G
    g = ng % G
    j = tl.arange(0, PBLOCK)
    pm = j < split
    p = part_ptr + (ng * split + j) * 3
    k = tl.load(p, mask=pm, other=0.0)
    mu = tl.load(p + 1, mask=pm, other=0.0)
    m2 = tl.load(p + 2, mask=pm, other=0.0)
    total = tl.sum(k, axis=0)
    mean = tl.sum(k * mu, axis=0) / total
    dev = mu - mean
    var = (tl.sum(m2, axis=0) + tl.sum(k * dev * dev, axis=0)) / total
    rstd = 1.0 / tl.sqrt(var + eps)
    c = tl.arange(0, CGP)
    ch = g * CG + c
    cmask = c < CG
    scale = tl.full([CGP], 1.0, tl.float32) * rstd
    shift = tl.zeros([CGP], dtype=tl.float32)
    if AFFINE:
        w = tl.load(w_ptr + ch, mask=cmask, other=1.0).to(tl.float32)
        scale = w * rstd
        shift = tl.load(b_ptr + ch, mask=cmask, other=0.0).to(tl.float32)
    xb = x_ptr + n.to(tl.int64) * xs_n
    yb = y_ptr + n.to(tl.int64) * ys_n
    for i in range(0, tiles_per_prog):
        tile = sp * tiles_per_prog + i
        f = tile // s_tiles
        s = (tile % s_tiles) * BLOCK_S + tl.arange(0, BLOCK_S)
        m = cmask[:, None] & (s < tl.where(tile < n_tiles, S, 0))[None, :]
        f64 = f.to(tl.int64)
        xo = f64 * xs_f + ch[:, None].to(tl.int64) * xs_c + s[None, :].to(tl.int64) * xs_s
        yo = f64 * ys_f + ch[:, None].to(tl.int64) * ys_c + s[None, :].to(tl.int64) * ys_s
        v = (tl.load(xb + xo, mask=m, other=0.0).to(tl.float32) - mean) * scale[:, None] + shift[:, None]
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
