"""i2vgen_core.weights.encoder_files: the releases' open_clip and SD2.1 files split into what ComfyUI's loaders take."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from i2vgen_core.weights import encoder_files as E
from i2vgen_core.weights.read import CheckpointError


def _open_clip_sd() -> dict[str, torch.Tensor]:
    """A two-block open_clip CLIP state dict with the real names (tiny widths)."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    sd = {"positional_embedding": r(77, 8), "token_embedding.weight": r(49408, 8), "ln_final.weight": r(8),
          "ln_final.bias": r(8), "text_projection": r(8, 4), "logit_scale": torch.tensor(4.6),
          "visual.class_embedding": r(12), "visual.positional_embedding": r(257, 12), "visual.proj": r(12, 4),
          "visual.conv1.weight": r(12, 3, 14, 14), "visual.ln_pre.weight": r(12), "visual.ln_post.weight": r(12)}
    for prefix, w in (("", 8), ("visual.", 12)):
        for i in range(2):
            b = f"{prefix}transformer.resblocks.{i}."
            sd.update({b + "ln_1.weight": r(w), b + "attn.in_proj_weight": r(3 * w, w),
                       b + "attn.out_proj.weight": r(w, w), b + "mlp.c_fc.weight": r(4 * w, w)})
    return sd


def test_open_clip_bin_splits_into_text_and_vision(tmp_path):
    sd = _open_clip_sd()
    src = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(sd, src)
    written = E.split_release_file(src, tmp_path / "out", dtype="fp16")
    assert sorted(written) == ["text", "vision"]
    text, vision = load_file(written["text"]), load_file(written["vision"])
    assert written["text"].name == "open_clip_pytorch_model.text.safetensors"
    assert all(k.startswith("visual.") for k in vision) and not any(k.startswith("visual.") for k in text)
    assert "logit_scale" not in text and E.OPEN_CLIP_TEXT_KEY in text and E.OPEN_CLIP_VISION_KEY in vision
    assert len(text) + len(vision) == len(sd) - 1
    for k, v in {**text, **vision}.items():
        assert v.dtype == torch.float16 and torch.equal(v, sd[k].half()), k


def test_sd_checkpoint_vae_extracted(tmp_path):
    g = torch.Generator().manual_seed(1)
    vae = {"encoder.conv_in.weight": torch.randn(128, 3, 3, 3, generator=g),
           "decoder.conv_out.weight": torch.randn(3, 128, 3, 3, generator=g),
           "quant_conv.weight": torch.randn(8, 8, 1, 1, generator=g)}
    full = {**{E.SD_VAE_PREFIX + k: v for k, v in vae.items()},
            "model.diffusion_model.out.2.weight": torch.zeros(4, 320, 3, 3),
            "cond_stage_model.model.ln_final.weight": torch.ones(1024)}
    src = tmp_path / "v2-1_512-ema-pruned.ckpt"
    torch.save({"state_dict": full, "global_step": 110000}, src)
    assert E.main([str(src), str(tmp_path / "out")]) == 0
    got = load_file(tmp_path / "out" / "v2-1_512-ema-pruned.vae.safetensors")
    assert got.keys() == vae.keys() and all(torch.equal(got[k], vae[k]) for k in vae)


def test_other_files_are_refused(tmp_path, capsys):
    src = tmp_path / "unet.pth"
    torch.save({"state_dict": {"input_blocks.0.0.weight": torch.zeros(2, 2)}}, src)
    with pytest.raises(CheckpointError, match="neither an open_clip model"):
        E.split_release_file(src, tmp_path / "out")
    assert E.main([str(src), str(tmp_path / "out")]) == 1
    assert "neither an open_clip model" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="open_clip CLIP state dict"):
        E.split_open_clip({"transformer.resblocks.0.ln_1.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="no VAE found"):
        E.sd_checkpoint_vae({"first_stage_model.encoder.conv_in.weight": torch.zeros(1)})
