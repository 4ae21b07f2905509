"""CPU checks (no ComfyUI) of the every-frame preview sheet, the model-file table and the workflows' model metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from i2vgen_core.weights import catalog as mf
from i2vgen_core.weights.demo import demo_file_names
from i2vgen_core.video.preview import SD_LATENT_RGB_FACTORS, latent_to_rgb, sheet_grid, sprite_sheet

ROOT = Path(__file__).resolve().parents[2]
UI_WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
LOADER_WIDGET = {"I2VGenXLModelLoader": 0, "CLIPLoader": 0, "CLIPVisionLoader": 0, "VAELoader": 0}
PUBLIC_REPOS = {"ali-vilab/i2vgen-xl", "ali-vilab/MS-Image2Video", "ali-vilab/MS-Vid2Vid-XL"}


# ------------------------------------------------------------------------------------------------ preview sheet
@pytest.mark.parametrize("frames, grid", [(1, (1, 1)), (2, (2, 1)), (4, (2, 2)), (5, (3, 2)), (16, (4, 4)),
                                          (17, (5, 4)), (32, (6, 6)), (128, (12, 11))])
def test_sheet_grid(frames, grid):
    cols, rows = sheet_grid(frames)
    assert (cols, rows) == grid and cols * rows >= frames and cols * (rows - 1) < frames


def test_sprite_sheet_puts_frame_i_at_tile_i():
    count, h, w = 7, 5, 6
    values = torch.linspace(-0.9, 0.9, count)
    frames = values.view(count, 1, 1, 1).expand(count, h, w, 3).clone()
    sheet, cols, rows = sprite_sheet(frames)
    assert (cols, rows) == (3, 3) and sheet.shape == (rows * h, cols * w, 3) and sheet.dtype == torch.uint8
    for i in range(cols * rows):
        tile = sheet[(i // cols) * h:(i // cols + 1) * h, (i % cols) * w:(i % cols + 1) * w]
        expected = int(((values[i] + 1) * 127.5).clamp(0, 255)) if i < count else 0
        assert (tile.int() - expected).abs().max() <= 1, (i, tile.unique())


def test_sprite_sheet_shrinks_big_frames_only():
    big = torch.zeros(16, 704, 1280, 3)
    sheet, cols, rows = sprite_sheet(big, max_frame_side=512)
    assert (cols, rows) == (4, 4) and sheet.shape[1] == 4 * 512 and sheet.shape[0] == 4 * int(704 * 512 / 1280)
    small = torch.zeros(16, 88, 160, 3)
    assert sprite_sheet(small)[0].shape == (4 * 88, 4 * 160, 3)
    many = torch.zeros(128, 88, 160, 3)
    sheet, cols, rows = sprite_sheet(many, max_sheet_side=1024)
    assert max(sheet.shape[:2]) <= 1024 and (cols, rows) == (12, 11)


def test_latent_to_rgb_is_comfyuis_map_for_every_frame():
    """Per frame the same linear map as ComfyUI's Latent2RGBPreviewer (which shows frame 0 only)."""
    g = torch.Generator().manual_seed(0)
    latent = torch.randn(4, 5, 6, 7, generator=g)
    rgb = latent_to_rgb(latent)
    weight = torch.tensor(SD_LATENT_RGB_FACTORS).transpose(0, 1)
    for f in range(5):
        ref = torch.nn.functional.linear(latent[:, f].movedim(0, -1), weight)
        torch.testing.assert_close(rgb[f], ref)
    with pytest.raises(ValueError, match="channels"):
        latent_to_rgb(torch.zeros(16, 2, 4, 4))


# ------------------------------------------------------------------------------------------------ model files
def test_readme_table_is_generated_from_the_data():
    readme = (ROOT / "README.md").read_text()
    assert mf.readme_table() in readme, "README's 'Where the real weights go' table is not model_files.readme_table()"


def test_every_workflow_and_demo_file_is_in_the_table():
    names = {f.name for f in mf.MODEL_FILES}
    demo = {name for files in demo_file_names().values() for name in files}
    assert demo <= names, f"demo weight files missing from MODEL_FILES: {sorted(demo - names)}"
    for f in mf.MODEL_FILES:
        assert f.repo in PUBLIC_REPOS and f.url.startswith(f"https://huggingface.co/{f.repo}/resolve/main/")
        assert f.folder in {"diffusion_models", "text_encoders", "clip_vision", "vae"}
        folders = [k for k, v in demo_file_names().items() if f.name in v]
        assert folders in ([], [f.folder]), f"{f.name}: demo weights put it in {folders}, the table in {f.folder}"


def test_missing_unet_message_says_what_where_and_which_folder():
    msg = mf.missing_unet_message("non_ema_0035000.pth")
    assert "https://huggingface.co/ali-vilab/MS-Vid2Vid-XL" in msg and "models/diffusion_models/" in msg
    general = mf.missing_unet_message()
    for repo in ("ali-vilab/i2vgen-xl", "ali-vilab/MS-Image2Video", "ali-vilab/MS-Vid2Vid-XL"):
        assert repo in general
    assert "No I2VGen-XL family checkpoint" in general


@pytest.mark.parametrize("path", UI_WORKFLOWS, ids=lambda p: p.stem)
def test_loader_nodes_carry_comfyui_model_metadata(path):
    """Every loader node: properties.models = [{name, url, directory}] for the file its widget holds."""
    ui = json.loads(path.read_text())
    loaders = [n for n in ui["nodes"] if n["type"] in LOADER_WIDGET]
    assert len(loaders) >= 3, path.name
    for node in loaders:
        name = node["widgets_values"][LOADER_WIDGET[node["type"]]]
        models = node.get("properties", {}).get("models")
        entry = mf.file_named(name)
        assert entry is not None, f"{path.name} node {node['id']}: {name} is not in MODEL_FILES"
        assert models == [{"name": name, "url": entry.url, "directory": entry.folder}], (path.name, node["id"], models)
