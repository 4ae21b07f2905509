"""Numerical parity of our UNet with the original ModelScope code (variants "ms_vid2vid_xl", "ms_image2video").

The references are ModelScope's own ``Vid2VidSDUNet`` (unet_v2v.py) and ``Img2VidSDUNet`` (unet_i2v.py),
executed from the installed modelscope source files (see tests/support/reference_models.py), built tiny with random
non-zero weights. Their ``state_dict()`` (ModelScope key names, as in the real checkpoints) is loaded into ours
with ``load_unet`` — in memory, as a ``{'state_dict': ...}`` .pth, and with ``model.diffusion_model.`` /
``module.`` prefixes — and fp32 outputs must agree within 1e-5 * max(1, max |output|) in eval mode (or twice the
reference's own fp32 rounding error where that is larger). The main cases are also run in float64 at timestep 0
and fps 0 and must agree to 1e-10 relative there: both implementations compute the sinusoidal embedding in float32
with different formulas (ModelScope ``pow(10000, -i/half)``, ours ``exp(-ln(10000) i/half)``, up to ~6e-5 apart in
a 320-d embedding at t = 999), which agree exactly only at 0.

Vid2Vid latent heights follow the real 720p path (Downsample padding (2, 1), Upsample crop of one row top and
bottom: 90 -> 46 -> 24 -> 13 -> 24 -> 46 -> 90); the small analogues used are 10 and 18 (the height must stay
even at every level but the last, i.e. h = 2 mod 8), widths a multiple of 8.
"""

from __future__ import annotations


import pytest
import torch


import reference_models as rm  # noqa: E402  (tests/support/ is on sys.path via conftest)

_missing = [rm.MODELSCOPE_UNET_FILES[k][1] for k in rm.MODELSCOPE_UNET_FILES if rm.modelscope_unet_file(k) is None]
if _missing:
    pytest.skip(f"modelscope source files {', '.join(_missing)} not found (install the test extra: modelscope); "
                "they are the reference for the ms_* variants", allow_module_level=True)

from i2vgen_core import load_unet  # noqa: E402

VARIANT = {"vid2vid": "ms_vid2vid_xl", "image2video": "ms_image2video"}

# tiny configurations: all widths multiples of 32 (GroupNorm(32) is hard-coded in the reference)
CONFIGS = {
    "mult1222_head16_res2": dict(dim=32, dim_mult=(1, 2, 2, 2), head_dim=16, num_res_blocks=2),
    "mult1244_head32_res1": dict(dim=32, dim_mult=(1, 2, 4, 4), head_dim=32, num_res_blocks=1),
}

# (batch, frames, latent height, latent width)
CASES = {
    "vid2vid": [(2, 3, 10, 16), (1, 4, 18, 24), (1, 1, 10, 8)],
    "image2video": [(2, 3, 16, 24), (1, 4, 8, 16), (2, 1, 8, 8)],
}
FORMAT_TEST_CONFIG = "mult1222_head16_res2"
TEXT_TOKENS = 77


@pytest.fixture(scope="module", autouse=True)
def _one_cpu_thread():
    with rm.single_threaded():
        yield


def _inputs(batch: int, frames: int, height: int, width: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return dict(
        sample=torch.randn(batch, 4, frames, height, width, generator=gen),
        timestep=torch.tensor([999, 37][:batch], dtype=torch.long),
        text=torch.randn(batch, TEXT_TOKENS, 1024, generator=gen),
        image_embedding=torch.randn(batch, 1024, generator=gen),
        fps=torch.tensor([8, 4][:batch], dtype=torch.long),
    )


def _run_ours(kind: str, unet: torch.nn.Module, inputs: dict, fps: bool = True) -> torch.Tensor:
    with torch.no_grad():
        if kind == "vid2vid":
            return unet(inputs["sample"], inputs["timestep"], text=inputs["text"])
        return unet(inputs["sample"], inputs["timestep"], image_embedding=inputs["image_embedding"],
                    fps=inputs["fps"] if fps else None)


def _run_reference(kind: str, ref: torch.nn.Module, inputs: dict, fps: bool = True) -> torch.Tensor:
    if kind == "vid2vid":
        return rm.run_modelscope_unet(ref, inputs["sample"], inputs["timestep"], text=inputs["text"])
    return rm.run_modelscope_unet(ref, inputs["sample"], inputs["timestep"],
                                  image_embedding=inputs["image_embedding"], fps=inputs["fps"] if fps else None)


@pytest.fixture(scope="module")
def modules() -> dict:
    """The two ModelScope source files, executed once per test module."""
    return {(kind, float64): rm.load_modelscope_unet_module(kind, float64=float64)
            for kind in rm.MODELSCOPE_UNET_FILES for float64 in (False, True)}


@pytest.fixture(scope="module")
def references(modules):
    """Builds (once per test module) the reference model of a (kind, configuration) pair."""
    built: dict = {}

    def get(kind: str, config: str) -> dict:
        if (kind, config) not in built:
            ref = rm.build_modelscope_unet(kind, seed=4321, module=modules[kind, False], **CONFIGS[config])
            ref64 = rm.float64_modelscope_copy(ref, modules[kind, True])
            built[kind, config] = {"kind": kind, "config": config, "ref": ref, "ref64": ref64,
                                   "state_dict": ref.state_dict(), "outputs": {}}
        return built[kind, config]

    return get


@pytest.fixture(params=[(k, c) for k in VARIANT for c in sorted(CONFIGS)], ids=lambda p: f"{p[0]}-{p[1]}")
def reference(request, references) -> dict:
    return references(*request.param)


@pytest.fixture(params=list(VARIANT))
def format_reference(request, references) -> dict:
    """One configuration per variant for the on-disk-format tests (the key renaming does not depend on it)."""
    return references(request.param, FORMAT_TEST_CONFIG)


def _reference_outputs(reference: dict, case: tuple, fps: bool, float64: bool) -> tuple:
    """(inputs, fp32 reference output, float64 reference output); cached per test module.

    float64=True: timestep 0 and fps 0, the values at which both float32 sinusoids (ModelScope's pow-based one
    and ours) are exact, so float64 outputs must agree to rounding.
    """
    inputs = _inputs(*case)
    if float64:
        inputs = {**inputs, "timestep": torch.zeros_like(inputs["timestep"]), "fps": torch.zeros_like(inputs["fps"])}
    key = (case, fps, float64)
    if key not in reference["outputs"]:
        kind = reference["kind"]
        reference["outputs"][key] = (_run_reference(kind, reference["ref"], inputs, fps),
                                     _run_reference(kind, reference["ref64"], rm.to_float64(inputs), fps))
    return (inputs, *reference["outputs"][key])


def _check(reference: dict, unet: torch.nn.Module, case: tuple, what: str, *, fps: bool = True,
           float64: bool = False) -> None:
    """Our fp32 output within tolerance of ModelScope's (and, with float64=True, equal in float64 at t = 0)."""
    kind = reference["kind"]
    label = f"{kind} {reference['config']} {what} B,F,h,w={case}"
    inputs, ref32, ref64 = _reference_outputs(reference, case, fps, float64=False)
    rm.assert_fp32_parity(_run_ours(kind, unet, inputs, fps), ref32, ref64, label)
    if float64:
        inputs, ref32, ref64 = _reference_outputs(reference, case, fps, float64=True)
        rm.assert_fp32_parity(_run_ours(kind, unet, inputs, fps), ref32, ref64, label + " t=0")
        ours64 = _run_ours(kind, rm.float64_copy(unet), rm.to_float64(inputs), fps)
        rm.assert_float64_parity(ours64, ref64, label + " t=0")


def _load(source) -> torch.nn.Module:
    return load_unet(source).float().eval()


def test_state_dict_load_matches_reference(reference):
    """In-memory ModelScope state dict -> our UNet: right variant, every shape case, fp32 and float64."""
    kind = reference["kind"]
    unet = _load(reference["state_dict"])
    assert unet.variant == VARIANT[kind]
    assert unet.config.vid2vid_pad == (kind == "vid2vid")
    for case in CASES[kind]:
        _check(reference, unet, case, "state dict", float64=True)


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model.", "module."])
def test_pth_file_matches_reference(format_reference, prefix, tmp_path):
    """ModelScope's on-disk form {'state_dict': sd} (optionally with a key prefix) loads to the same outputs."""
    kind = format_reference["kind"]
    path = tmp_path / "unet.pth"
    torch.save({"state_dict": {prefix + k: v for k, v in format_reference["state_dict"].items()}}, path)
    unet = _load(path)
    assert unet.variant == VARIANT[kind]
    _check(format_reference, unet, CASES[kind][0], f".pth prefix={prefix!r}")


@pytest.mark.parametrize("prefix", ["model.diffusion_model.", "module."])
def test_prefixed_state_dict_matches_reference(format_reference, prefix):
    """A bare in-memory state dict with a wrapper prefix loads too."""
    kind = format_reference["kind"]
    unet = _load({prefix + k: v for k, v in format_reference["state_dict"].items()})
    assert unet.variant == VARIANT[kind]
    _check(format_reference, unet, CASES[kind][0], f"in-memory prefix={prefix!r}")


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_image2video_default_fps_matches_reference(references, config):
    """fps=None uses the model's default (8), as ModelScope's Img2VidSDUNet.forward does."""
    reference = references("image2video", config)
    _check(reference, _load(reference["state_dict"]), CASES["image2video"][0], "fps=None", fps=False)
