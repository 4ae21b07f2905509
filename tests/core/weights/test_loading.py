"""Checkpoint formats, wrappers, dtypes, the converter, and clear errors for files that are not ours."""

import pytest
import torch
from safetensors.torch import save_file

from i2vgen_core import CheckpointError, export_state_dict, load_unet
from i2vgen_core.weights.layouts import diffusers_config
from i2vgen_core.weights.convert import main as convert_main

from helpers import inputs_for, random_unet


def same_output(a, b, **kw):
    x, t, c = inputs_for(a, **kw)
    return torch.allclose(a(x, t, **c), b(x, t, **c), atol=1e-6)


@pytest.mark.parametrize("variant", ["i2vgen_xl", "ms_image2video", "ms_vid2vid_xl"])
@pytest.mark.parametrize("fmt", ["vgen", "modelscope", "diffusers"])
def test_round_trip_every_format(tmp_path, variant, fmt):
    if fmt == "diffusers" and variant != "i2vgen_xl":
        pytest.skip("diffusers only ships I2VGen-XL")
    unet = random_unet(variant)
    sd = export_state_dict(unet, fmt)
    torch.save({"state_dict": sd, "step": 1}, tmp_path / "model.pth")
    loaded = load_unet(tmp_path / "model.pth")
    assert loaded.variant == variant and loaded.config == unet.config
    h = 10 if variant == "ms_vid2vid_xl" else 8
    assert same_output(unet, loaded, h=h, w=16)


def test_diffusers_folder_and_fp16_file(tmp_path):
    import json
    unet = random_unet()
    folder = tmp_path / "unet"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(diffusers_config(unet.config)))
    sd16 = {k: v.half().contiguous() for k, v in export_state_dict(unet, "diffusers").items()}
    save_file(sd16, str(folder / "diffusion_pytorch_model.fp16.safetensors"))
    loaded = load_unet(folder)
    assert loaded.dtype == torch.float16 and loaded.variant == "i2vgen_xl"
    assert load_unet(folder, dtype=torch.float32).dtype == torch.float32
    assert load_unet(folder / "diffusion_pytorch_model.fp16.safetensors", dtype=torch.bfloat16).dtype == torch.bfloat16


def test_prefix_and_wrappers():
    unet = random_unet("ms_vid2vid_xl")
    sd = export_state_dict(unet, "modelscope")
    for wrapped in ({"model.diffusion_model." + k: v for k, v in sd.items()},
                    {"module." + k: v for k, v in sd.items()}, {"state_dict": sd}, {"state_dict": {"model": sd}},
                    # what ComfyUI's ModelSave writes: prefixed weights plus a v_pred marker
                    {**{"model.diffusion_model." + k: v for k, v in sd.items()}, "v_pred": torch.tensor([])}):
        assert load_unet(wrapped).variant == "ms_vid2vid_xl"


def test_converter_writes_loadable_safetensors(tmp_path, capsys):
    unet = random_unet("ms_image2video")
    torch.save({"state_dict": export_state_dict(unet, "modelscope")}, tmp_path / "base.pth")
    assert convert_main([str(tmp_path / "base.pth"), str(tmp_path / "base.safetensors"), "--dtype", "fp16"]) == 0
    assert "ms_image2video" in capsys.readouterr().out
    loaded = load_unet(tmp_path / "base.safetensors")
    assert loaded.dtype == torch.float16 and loaded.config == unet.config
    assert convert_main([str(tmp_path / "base.pth"), str(tmp_path / "x.ckpt")]) == 2



def test_safetensors_with_metadata_of_the_multiplier_era_still_load(tmp_path):
    """Files converted before the channel plan was stored as channels carry model_channels + channel_mult."""
    import json

    unet = random_unet("ms_vid2vid_xl", norm_groups=16)  # a group count the tensors cannot tell: metadata is read
    old = {k: v for k, v in unet.config.to_dict().items() if k != "block_channels"}
    old.update(model_channels=32, channel_mult=[1, 2, 2, 2])
    save_file(export_state_dict(unet, "modelscope"), str(tmp_path / "old.safetensors"),
              metadata={"i2vgen_config": json.dumps(old)})
    loaded = load_unet(tmp_path / "old.safetensors")
    assert loaded.config == unet.config and loaded.config.block_channels == (32, 64, 64, 64)


def sd_like(*names, shape=(4, 4)):
    return {n: torch.zeros(shape) for n in names}


@pytest.mark.parametrize("sd, words", [
    (sd_like("model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.input_blocks.1.1.proj_in.weight",
             "first_stage_model.encoder.conv_in.weight", "cond_stage_model.transformer.text_model.x"), "Stable Diffusion"),
    (sd_like("encoder.down.0.block.0.conv1.weight", "decoder.up.0.block.0.conv1.weight"), "VAE"),
    (sd_like("text_model.encoder.layers.0.mlp.fc1.weight", "text_model.embeddings.token_embedding.weight"), "CLIP text"),
    (sd_like("vision_model.encoder.layers.0.mlp.fc1.weight"), "CLIP vision"),
    (sd_like("conv_in.weight", "down_blocks.0.resnets.0.conv1.weight"), "2D UNet"),
    (sd_like("foo.weight", "bar.bias"), "unknown model"),
])
def test_wrong_files_say_what_they_are(sd, words):
    with pytest.raises(CheckpointError, match=words):
        load_unet(sd)


def test_incomplete_checkpoint_is_a_clear_error():
    sd = export_state_dict(random_unet(), "vgen")
    sd.pop("input_blocks.4.1.proj_out.weight")
    sd["input_blocks.1.0.in_layers.2.weight"] = torch.zeros(1, 1, 3, 3)
    with pytest.raises(CheckpointError, match="missing") as err:
        load_unet(sd)
    assert "other shapes" in str(err.value) and "in_layers" in str(err.value)
