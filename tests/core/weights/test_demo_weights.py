"""The demo-weight generator: tiny UNets load through load_unet; encoder layouts match the real HF/diffusers ones."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from i2vgen_core.weights import demo as dw
from i2vgen_core import load_unet


def test_demo_file_list_is_consistent():
    names = [f.relpath for f in dw.DEMO_FILES]
    assert len(names) == len(set(names))
    folders = dw.demo_file_names()
    assert set(folders) == {"diffusion_models", "text_encoders", "clip_vision", "vae"}
    variants = {(f.variant, f.fmt) for f in dw.DEMO_FILES if f.kind == "unet"}
    assert variants == {("i2vgen_xl", "diffusers"), ("i2vgen_xl", "vgen"), ("ms_image2video", "modelscope"),
                        ("ms_vid2vid_xl", "modelscope")}
    for f in dw.DEMO_FILES:
        assert f.kind == "unet" or f.kind in dw.SPEC_BUILDERS


def test_unets_only_load_with_the_right_variant(tmp_path):
    results = dw.generate(tmp_path, unets_only=True, log=lambda s: None)
    assert {r[0].kind for r in results} == {"unet"} and len(results) == 4
    for f, path, size, _, written in results:
        assert written and path.exists() and size == path.stat().st_size
        unet = load_unet(path)
        assert unet.variant == f.variant, f.name
        assert unet.config.context_dim == 1024
        if unet.config.use_image_embedding:
            assert unet.config.image_embedding_dim == 1024
        expected = torch.float16 if f.dtype == "fp16" else torch.float32
        assert next(unet.parameters()).dtype == expected
        if path.suffix == ".pth":
            obj = torch.load(path, map_location="cpu", weights_only=True)
            assert set(obj) == {"state_dict", "step"}
        else:
            with safe_open(str(path), framework="pt") as fh:
                assert "i2vgen_demo" in fh.metadata()
    # Generated UNets run and give finite outputs
    unet = load_unet(tmp_path / "diffusion_models" / "i2vgen_xl_00854500.pth")
    x = torch.randn(1, 4, 2, 8, 8)
    out = unet(x, torch.tensor([500.0]), text=torch.randn(1, 77, 1024), image_embedding=torch.randn(1, 1024),
               image_latent=torch.randn(1, 4, 8, 8), fps=torch.tensor([16]))
    assert out.shape == x.shape and torch.isfinite(out).all() and out.std() > 0
    # Existing files are kept unless forced
    again = dw.generate(tmp_path, unets_only=True, log=lambda s: None)
    assert not any(r[4] for r in again)
    assert (tmp_path / "extra_model_paths.yaml").read_text().count("/") >= 4


def test_unets_are_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        dw.generate(d, unets_only=True, log=lambda s: None)
    sa = load_file(a / "diffusion_models" / "i2vgen_xl.fp16.safetensors")
    sb = load_file(b / "diffusion_models" / "i2vgen_xl.fp16.safetensors")
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _meta_state_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _spec_shapes(specs) -> dict[str, tuple[int, ...]]:
    return {name: tuple(shape) for name, shape, _ in specs}


def test_text_encoder_layout_matches_transformers():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                      num_attention_heads=16, max_position_embeddings=77, vocab_size=49408,
                                      projection_dim=1024, hidden_act="gelu")
    with torch.device("meta"):
        model = transformers.CLIPTextModel(cfg)
    shapes = _meta_state_shapes(model)
    # transformers 5 names the text tower's tensors without the "text_model." prefix that the hub files (and
    # ComfyUI's detection) use; its loader maps the old names.
    shapes = {(k if k.startswith("text_model.") else f"text_model.{k}"): v for k, v in shapes.items()}
    assert _spec_shapes(dw.clip_text_h_specs()) == shapes
    # ComfyUI's text-encoder detection: CLIP-H (SD2) has layer 22 but not layer 30
    keys = set(_spec_shapes(dw.clip_text_h_specs()))
    assert "text_model.encoder.layers.22.mlp.fc1.weight" in keys
    assert "text_model.encoder.layers.30.mlp.fc1.weight" not in keys


def test_clip_vision_layout_matches_transformers():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                                        num_attention_heads=16, image_size=224, patch_size=14, projection_dim=1024,
                                        hidden_act="gelu")
    with torch.device("meta"):
        model = transformers.CLIPVisionModelWithProjection(cfg)
    assert _spec_shapes(dw.clip_vision_h_specs()) == _meta_state_shapes(model)
    # ComfyUI's clip_vision detection: ViT-H has layer 30 but not layer 47
    keys = set(_spec_shapes(dw.clip_vision_h_specs()))
    assert "vision_model.encoder.layers.30.layer_norm1.weight" in keys
    assert "vision_model.encoder.layers.47.layer_norm1.weight" not in keys


def test_vae_layout_matches_diffusers():
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):
        model = diffusers.AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32,
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    assert _spec_shapes(dw.vae_sd21_specs()) == _meta_state_shapes(model)
    # ComfyUI converts diffusers VAEs when it sees this key
    assert "decoder.up_blocks.0.resnets.0.norm1.weight" in _spec_shapes(dw.vae_sd21_specs())


def test_parameter_counts_match_the_real_encoders():
    count = lambda specs: sum(math.prod(s) for _, s, _ in specs)  # noqa: E731
    assert count(dw.vae_sd21_specs()) == 83_653_863
    assert count(dw.clip_vision_h_specs()) == 632_076_800
    assert count(dw.clip_text_h_specs()) == 352_984_064  # hub text_encoder (CLIPTextModel, no projection)


def test_streaming_writer_roundtrip_and_determinism(tmp_path):
    specs = [("b.weight", (3, 5), "normal:0.5"), ("a.bias", (7,), "zeros"), ("c.norm", (4,), "ones"),
             ("d.big", (64, 33), "normal:0.02")]
    p1, p2 = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    size = dw.write_safetensors_streaming(p1, specs, seed=3, dtype=torch.float16, metadata={"x": "y"})
    assert size == p1.stat().st_size
    dw.write_safetensors_streaming(p2, list(reversed(specs)), seed=3, dtype=torch.float16)
    a, b = load_file(p1), load_file(p2)
    assert a.keys() == b.keys() == {n for n, _, _ in specs}
    for k in a:
        assert torch.equal(a[k], b[k]) and a[k].dtype == torch.float16
    assert torch.equal(a["a.bias"], torch.zeros(7, dtype=torch.float16))
    assert torch.equal(a["c.norm"], torch.ones(4, dtype=torch.float16))
    assert 0.3 < float(a["b.weight"].float().std()) < 0.8
    with safe_open(str(p1), framework="pt") as fh:
        assert fh.metadata()["x"] == "y"


def test_cli_list(capsys):
    assert dw.main(["--list"]) == 0
    out = capsys.readouterr().out
    for f in dw.DEMO_FILES:
        assert f.relpath in out
