"""Numerical parity of our UNet (variant "i2vgen_xl") with diffusers' I2VGenXLUNet.

Tiny diffusers models with random non-zero weights (fp32, CPU) are saved in the on-disk formats users have
(diffusers folder, single-file diffusers safetensors, VGen ``{'state_dict': ...}`` .pth) and loaded with our
``load_unet``. With ``image_branch_scale = 1.0`` our fp32 output must equal diffusers' within
1e-5 * max(1, max |output|) — or twice diffusers' own fp32 rounding error, where that is larger (the unit-test
configuration's 4-channel LayerNorms amplify rounding to ~1.4e-5 relative) — and, for the main cases, the float64
outputs must agree to 1e-10 relative (the same function, not just close). With the default 2.0 (what VGen's
training code computes: the image branch is added twice) it must equal diffusers with ``conv_in.weight[:, 4:]``
doubled.

Inputs: diffusers takes ``image_latents`` [B,4,F,h,w] (built here as I2VGenXLPipeline.prepare_image_latents
does: frame 0 = latent, frame j = ones * j/(F-1)) and ``image_embeddings`` [B,1,C]; ours takes the [B,4,h,w]
latent and [B,C] embedding.
"""

from __future__ import annotations


import pytest
import torch


import reference_models as rm  # noqa: E402  (tests/support/ is on sys.path via conftest)

if rm.diffusers_i2vgen_unet_class() is None:
    pytest.skip("diffusers with I2VGenXLUNet (<= 0.42) is not installed; it is the i2vgen_xl reference",
                allow_module_level=True)

from safetensors.torch import save_file  # noqa: E402

from i2vgen_core import load_unet  # noqa: E402
from i2vgen_core.weights.layouts import export_state_dict  # noqa: E402

CONFIGS = {
    "unit": rm.DIFFUSERS_UNIT_TEST_CONFIG,
    "real_shaped": rm.DIFFUSERS_REAL_SHAPED_CONFIG,
}

# (batch, frames, latent height, latent width); 12x20 and 10x14 are not multiples of 8 (diffusers forwards
# upsample_size there), 9x13 is odd, F=1 has no ramp frames.
CASES = {
    "unit": [(1, 2, 12, 20), (2, 5, 10, 14), (2, 1, 8, 8), (1, 3, 9, 13)],
    "real_shaped": [(1, 2, 12, 20), (2, 5, 10, 14), (2, 1, 8, 16), (1, 3, 16, 16)],
}
TEXT_TOKENS = 77


@pytest.fixture(scope="module", autouse=True)
def _one_cpu_thread():
    with rm.single_threaded():
        yield


def _inputs(config: dict, batch: int, frames: int, height: int, width: int, seed: int = 0) -> dict:
    """Random inputs in our API's shapes."""
    gen = torch.Generator().manual_seed(seed)
    dim = config["cross_attention_dim"]
    return dict(
        sample=torch.randn(batch, 4, frames, height, width, generator=gen),
        timestep=torch.tensor([981, 421][:batch], dtype=torch.long),
        text=torch.randn(batch, TEXT_TOKENS, dim, generator=gen),
        image_embedding=torch.randn(batch, dim, generator=gen),
        image_latent=torch.randn(batch, 4, height, width, generator=gen),
        fps=torch.tensor([16, 8][:batch], dtype=torch.long),
    )


def _run_ours(unet: torch.nn.Module, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return unet(inputs["sample"], inputs["timestep"], text=inputs["text"],
                    image_embedding=inputs["image_embedding"], image_latent=inputs["image_latent"],
                    fps=inputs["fps"])


def _run_reference(unet: torch.nn.Module, inputs: dict) -> torch.Tensor:
    return rm.run_diffusers_unet(unet, inputs["sample"], inputs["timestep"], text=inputs["text"],
                                 image_embedding=inputs["image_embedding"], image_latent=inputs["image_latent"],
                                 fps=inputs["fps"])


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def saved(request, tmp_path_factory) -> dict:
    """One reference model per configuration, saved as a diffusers folder and as a single safetensors file."""
    name = request.param
    ref = rm.build_diffusers_unet(CONFIGS[name], seed=1234)
    root = tmp_path_factory.mktemp(f"diffusers_{name}")
    folder = root / "unet"
    ref.save_pretrained(folder, safe_serialization=True)
    single = root / "i2vgen_xl_unet.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(single))
    doubled = rm.with_doubled_image_branch(ref)
    models = {"plain": (ref, rm.float64_copy(ref)), "doubled": (doubled, rm.float64_copy(doubled))}
    return {"name": name, "config": CONFIGS[name], "ref": ref, "models": models, "folder": folder,
            "single": single, "root": root, "outputs": {}}


def _reference_outputs(saved: dict, case: tuple, which: str = "plain", **overrides) -> tuple:
    """(inputs, fp32 reference output, float64 reference output) for a shape case; cached per module."""
    inputs = {**_inputs(saved["config"], *case), **overrides}
    key = (which, case, tuple(sorted(overrides.items())))
    if key not in saved["outputs"]:
        ref32, ref64 = saved["models"][which]
        saved["outputs"][key] = (_run_reference(ref32, inputs), _run_reference(ref64, rm.to_float64(inputs)))
    return (inputs, *saved["outputs"][key])


def _check(saved: dict, unet: torch.nn.Module, case: tuple, what: str, *, which: str = "plain",
           float64: bool = False, **overrides) -> None:
    """Our fp32 output within tolerance of diffusers' (and, with float64=True, equal in float64 too)."""
    inputs, ref32, ref64 = _reference_outputs(saved, case, which, **overrides)
    label = f"{saved['name']} {what} B,F,h,w={case}"
    rm.assert_fp32_parity(_run_ours(unet, inputs), ref32, ref64, label)
    if float64:
        rm.assert_float64_parity(_run_ours(rm.float64_copy(unet), rm.to_float64(inputs)), ref64, label)


def _load(source, scale: float = 1.0, config=None) -> torch.nn.Module:
    unet = load_unet(source, config=config)
    unet.image_branch_scale = scale
    return unet.float().eval()


def _config_hint(saved):
    """None (infer everything from the tensors) unless the GroupNorm group count is not the family's 32.

    The group count is not visible in any tensor shape, so a bare single file or VGen .pth of a model with other
    groups (the diffusers unit-test configuration: 2) needs the configuration given explicitly.
    """
    if saved["config"]["norm_num_groups"] == 32:
        return None
    return load_unet(saved["folder"]).config


def test_folder_load_matches_diffusers(saved):
    """diffusers folder (config.json + weights) -> our UNet; every shape case, fp32 and float64."""
    unet = _load(saved["folder"])
    assert unet.variant == "i2vgen_xl"
    for case in CASES[saved["name"]]:
        _check(saved, unet, case, "folder", float64=True)


def test_single_file_safetensors_matches_diffusers(saved):
    """Single-file safetensors with diffusers key names (no config.json) -> same outputs."""
    unet = _load(saved["single"], config=_config_hint(saved))
    assert unet.variant == "i2vgen_xl"
    _check(saved, unet, CASES[saved["name"]][0], "single file")


def test_vgen_pth_round_trip_matches_diffusers(saved):
    """Export to VGen names, save as VGen's {'state_dict': ...} .pth, load again -> same outputs."""
    unet = _load(saved["folder"])
    vgen_sd = export_state_dict(unet, "vgen")
    assert "input_blocks.0.0.weight" in vgen_sd and "conv_in.weight" not in vgen_sd
    assert len(vgen_sd) == len(saved["ref"].state_dict()) - 2  # fused to_qkv in the image-latent encoder
    path = saved["root"] / "i2vgen_xl_vgen.pth"
    torch.save({"state_dict": vgen_sd, "step": 0}, path)
    again = _load(path, config=_config_hint(saved))
    assert again.variant == "i2vgen_xl"
    _check(saved, again, CASES[saved["name"]][0], "vgen .pth")


def test_diffusers_export_round_trip_is_exact(saved):
    """export_state_dict(unet, "diffusers") gives back the reference's tensors, names and values."""
    unet = _load(saved["folder"])
    exported = export_state_dict(unet, "diffusers")
    reference = saved["ref"].state_dict()
    assert sorted(exported) == sorted(reference)
    for key, value in reference.items():
        assert torch.equal(exported[key].float(), value.float()), key


def test_default_image_branch_scale_is_vgen(saved):
    """Default image_branch_scale 2.0 differs from diffusers and equals diffusers with conv_in.weight[:, 4:] x2."""
    unet = load_unet(saved["folder"]).float().eval()
    assert unet.image_branch_scale == 2.0
    case = CASES[saved["name"]][0]
    inputs, plain32, _ = _reference_outputs(saved, case)
    ours = _run_ours(unet, inputs)
    assert rm.max_abs_diff(ours, plain32) > 1e-3 * max(1.0, plain32.abs().max().item()), \
        "image_branch_scale=2 gives diffusers' output: the x2 image branch has no effect"
    _check(saved, unet, case, "image_branch_scale=2 vs doubled conv_in", which="doubled", float64=True)


def test_scalar_timestep_matches_diffusers(saved):
    """A Python-number timestep broadcasts over the batch the way diffusers does."""
    _check(saved, _load(saved["folder"]), (2, 2, 8, 8), "scalar timestep", timestep=500)


def test_channels_that_are_not_multiples_of_the_first_level_load(tmp_path):
    """block_out_channels (96, 192, 256, 256): 256 is no integer multiple of 96, so the channel plan must be held as
    channels (not multipliers); the diffusers folder loads and computes what diffusers computes."""
    config = {**rm.DIFFUSERS_REAL_SHAPED_CONFIG, "block_out_channels": (96, 192, 256, 256), "layers_per_block": 1,
              "attention_head_dim": 32}
    ref = rm.build_diffusers_unet(config, seed=7)
    ref.save_pretrained(tmp_path / "unet", safe_serialization=True)
    unet = _load(tmp_path / "unet")
    assert unet.config.block_channels == (96, 192, 256, 256) and unet.config.model_channels == 96
    inputs = _inputs(config, 1, 2, 8, 12)
    ref32 = _run_reference(ref, inputs)
    ref64 = _run_reference(rm.float64_copy(ref), rm.to_float64(inputs))
    rm.assert_fp32_parity(_run_ours(unet, inputs), ref32, ref64, "block_out_channels (96, 192, 256, 256)")
