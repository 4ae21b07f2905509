"""Base and refine stages end to end: the I2VGen-XL base stage against diffusers' I2VGenXLPipeline (tiny components
built as diffusers' own fast tests built them, the hub scheduler config), the refine stage against ModelScope's
MS-Vid2Vid-XL GaussianDiffusion_SDEdit.sample."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from i2vgen_core.diffusion.pipeline import run_base_stage, run_refine_stage

from helpers import HUB_SCHEDULER_CONFIG

FRAMES, STEPS, SIZE = 4, 4, 32  # 4 divides 1000: diffusers and the original visit the same timesteps


def _byte_level_tokenizer(folder: Path):
    """An offline CLIPTokenizer with a byte-level vocabulary (no merges) and 77-token context, ids < 1000."""
    from transformers import CLIPTokenizer

    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    chars = [chr(b) if b in printable else chr(next(extra)) for b in range(256)]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 256 + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": 512, "<|endoftext|>": 513})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def _tiny_pipeline(folder: Path):
    """I2VGenXLPipeline with the tiny components of diffusers' fast tests; the scheduler uses the hub config."""
    from diffusers import AutoencoderKL, DDIMScheduler, I2VGenXLPipeline
    from diffusers.models.unets import I2VGenXLUNet
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)

    torch.manual_seed(0)
    unet = I2VGenXLUNet(block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
                        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), cross_attention_dim=4,
                        attention_head_dim=4, num_attention_heads=None, norm_num_groups=2)
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8,), in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"],
                        up_block_types=["UpDecoderBlock2D"], latent_channels=4, sample_size=32, norm_num_groups=2)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=2, hidden_size=4, intermediate_size=16,
                                                layer_norm_eps=1e-05, num_attention_heads=2, num_hidden_layers=2,
                                                pad_token_id=1, vocab_size=1000, hidden_act="gelu",
                                                projection_dim=32))
    if not hasattr(text_encoder, "text_model"):
        # transformers 5 flattened CLIPTextModel; the deprecated pipeline still reads text_model.final_layer_norm
        object.__setattr__(text_encoder, "text_model", SimpleNamespace(final_layer_norm=text_encoder.final_layer_norm))
    torch.manual_seed(0)
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=4, projection_dim=4,
                                                                   num_hidden_layers=2, num_attention_heads=2,
                                                                   image_size=32, intermediate_size=16, patch_size=1))
    torch.manual_seed(0)
    pipe = I2VGenXLPipeline(vae=vae, text_encoder=text_encoder, tokenizer=_byte_level_tokenizer(folder),
                            image_encoder=image_encoder, feature_extractor=CLIPImageProcessor(crop_size=32, size=32),
                            unet=unet, scheduler=DDIMScheduler.from_config(HUB_SCHEDULER_CONFIG))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_base_stage_matches_diffusers_i2vgenxl_pipeline(tmp_path):
    """Same conditioning (captured from the pipeline's UNet calls), same start noise, diffusers' last-step alpha 1.

    The pipeline samples the VAE posterior with the global RNG, so the image latents it actually used are taken from
    its first UNet call rather than recomputed.
    """
    from i2vgen_core import load_unet

    pipe = _tiny_pipeline(tmp_path)
    calls = []
    hook = pipe.unet.register_forward_pre_hook(lambda m, args, kwargs: calls.append((args, kwargs)), with_kwargs=True)
    image = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    ref = pipe(image=image, prompt="A painting of a squirrel eating a burger", output_type="latent",
               num_frames=FRAMES, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0),
               height=SIZE, width=SIZE).frames
    hook.remove()
    lat = SIZE // pipe.vae_scale_factor  # the tiny VAE has one level: factor 1
    assert ref.shape == (1, 4, FRAMES, lat, lat) and len(calls) == STEPS

    (sample, _), kw = calls[0]
    assert [int(a[1]) for a, _ in calls] == [751, 501, 251, 1]
    noise = sample[1:].clone()
    text, image_embeddings, image_latents = kw["encoder_hidden_states"], kw["image_embeddings"], kw["image_latents"]
    # the pipeline's unconditional branch: negative text, zero image embedding, the same image latents and fps
    assert torch.equal(image_embeddings[0], torch.zeros_like(image_embeddings[0]))
    assert torch.equal(image_latents[0], image_latents[1]) and kw["fps"].tolist() == [16, 16]
    ramp = torch.arange(1, FRAMES).div(FRAMES - 1).view(1, -1, 1, 1).expand(4, -1, lat, lat)
    assert torch.allclose(image_latents[1, :, 1:], ramp.to(image_latents.dtype))

    pipe.unet.save_pretrained(tmp_path / "unet")
    unet = load_unet(tmp_path / "unet")
    unet.image_branch_scale = 1.0  # diffusers adds the image branch once, VGen twice
    seen = []
    ours = run_base_stage(unet, text=text[1:], negative_text=text[:1], image_embedding=image_embeddings[1:],
                          image_latent=image_latents[1:, :, 0], fps=16, num_frames=FRAMES, steps=STEPS,
                          guidance_scale=9.0, noise=noise, final_alpha="one",
                          callback=lambda i, n, x0: seen.append((i, n, x0.shape)))
    diff = (ours - ref).abs().max().item()
    print(f"run_base_stage vs I2VGenXLPipeline: max abs diff {diff:.3g} (latent magnitude {ref.abs().max():.3g})")
    assert diff <= 1e-4
    assert seen == [(i, STEPS, ref.shape) for i in range(STEPS)]


# --------------------------------------------------------------------------------------------------------------------
# refine stage


@pytest.fixture(scope="module")
def v2v_ref():
    """ModelScope video_to_video/utils modules loaded as a throw-away package (torchsde stubbed if missing)."""
    spec = importlib.util.find_spec("modelscope")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("modelscope is not installed")
    utils = Path(list(spec.submodule_search_locations)[0]) / "models/multi_modal/video_to_video/utils"
    modules = {}
    with pytest.MonkeyPatch.context() as mp:
        if importlib.util.find_spec("torchsde") is None:
            mp.setitem(sys.modules, "torchsde", types.ModuleType("torchsde"))
        pkg = types.ModuleType("_ref_v2v_utils_p")
        pkg.__path__ = [str(utils)]
        mp.setitem(sys.modules, pkg.__name__, pkg)
        for name in ("schedules_sdedit", "solvers_sdedit", "diffusion_sdedit"):
            s = importlib.util.spec_from_file_location(f"{pkg.__name__}.{name}", utils / f"{name}.py")
            module = importlib.util.module_from_spec(s)
            mp.setitem(sys.modules, s.name, module)
            s.loader.exec_module(module)
            modules[name] = module
    return SimpleNamespace(**modules)


def toy_text_v(x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Deterministic stand-in v-model conditioned on a text embedding [B,77,D]."""
    view = (-1,) + (1,) * (x.ndim - 1)
    tt = t.to(x.dtype).view(view) / 1000.0
    return 0.7 * torch.tanh(x) + (0.1 + 0.3 * tt) * text.mean(dim=(1, 2)).view(view) * x.flip(-1) + 0.05 * tt


class ToyVid2Vid(torch.nn.Module):
    """Text-only UNet stand-in with the core UNet's call signature."""

    variant = "ms_vid2vid_xl"
    config = SimpleNamespace(use_text=True, use_image_embedding=False, use_image_latent=False, use_fps=False)

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.calls = 0

    def forward(self, sample, timestep, *, text=None, image_embedding=None, image_latent=None, fps=None):
        assert image_embedding is None and image_latent is None and fps is None
        self.calls += 1
        return toy_text_v(sample, timestep, text)


@pytest.mark.parametrize("method,steps", [("dpmpp_2m_sde", 30), ("heun", 12)])
def test_refine_stage_matches_modelscope_vid2vid(v2v_ref, monkeypatch, method, steps):
    """run_refine_stage vs the MS-Vid2Vid-XL inference: diffuse to t=599, CFG 7.5 + rescale 0.2, trailing sigmas."""
    g = torch.Generator().manual_seed(0)
    shape = (2, 4, 3, 4, 6)
    latents, noise = torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g,
                                                                                      dtype=torch.float64)
    text, negative = torch.randn(2, 77, 8, generator=g, dtype=torch.float64), torch.randn(1, 77, 8, generator=g,
                                                                                        dtype=torch.float64)

    class Replay:  # stands in for the torchsde Brownian tree: seeded normals in call order
        def __init__(self, x, sigma_min, sigma_max, seed=None, transform=None):
            self.like, self.gen = x, torch.Generator().manual_seed(11)

        def __call__(self, sigma, sigma_next):
            return torch.randn(self.like.shape, generator=self.gen, dtype=self.like.dtype)

    monkeypatch.setattr(v2v_ref.solvers_sdedit, "BrownianTreeNoiseSampler", Replay)
    sigmas = v2v_ref.schedules_sdedit.noise_schedule("logsnr_cosine_interp", n=1000, zero_terminal_snr=True,
                                                     scale_min=2.0, scale_max=4.0)
    diffusion = v2v_ref.diffusion_sdedit.GaussianDiffusion_SDEdit(sigmas=sigmas, prediction_type="v")
    x_t = diffusion.diffuse(latents, torch.full((2,), 599, dtype=torch.long), noise)
    ref = diffusion.sample(noise=x_t, model=lambda xt, t, y: toy_text_v(xt, t, y),
                           model_kwargs=[{"y": text}, {"y": negative.expand(2, -1, -1)}], guide_scale=7.5,
                           guide_rescale=0.2, solver=method, steps=steps, t_max=599, t_min=0,
                           discretization="trailing")

    unet = ToyVid2Vid()
    ours = run_refine_stage(unet, latents, text=text, negative_text=negative, strength=0.6, steps=steps,
                            guidance_scale=7.5, guidance_rescale=0.2, method=method, noise=noise,
                            generator=torch.Generator().manual_seed(11))
    diff = (ours - ref).abs().max().item()
    print(f"run_refine_stage({method}, {steps} steps) vs GaussianDiffusion_SDEdit: max abs diff {diff:.3g}")
    assert diff <= 1e-5
    assert unet.calls == (steps if method == "dpmpp_2m_sde" else 2 * steps - 1)  # batched CFG: one call per eval


def test_stages_run_on_tiny_core_unets():
    """Shapes, defaults, callbacks and errors with randomly initialised tiny core models of each variant."""
    from i2vgen_core import build_unet, tiny_config

    torch.manual_seed(0)
    base = build_unet(tiny_config("i2vgen_xl")).eval()
    text = torch.randn(1, 77, base.config.context_dim)
    kw = dict(text=text, negative_text=torch.zeros_like(text), image_embedding=torch.randn(1, 1024),
              image_latent=torch.randn(1, 4, 8, 8))
    steps_seen = []
    out = run_base_stage(base, **kw, num_frames=2, steps=2, generator=torch.Generator().manual_seed(0),
                         callback=lambda i, n, x0: steps_seen.append(i))
    assert out.shape == (1, 4, 2, 8, 8) and torch.isfinite(out).all() and steps_seen == [0, 1]
    again = run_base_stage(base, **kw, num_frames=2, steps=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    with pytest.raises(ValueError, match="image_embedding"):
        run_base_stage(base, **{**kw, "image_embedding": None}, num_frames=2, steps=1)
    with pytest.raises(ValueError, match="frames"):
        run_base_stage(base, **kw, num_frames=3, steps=1, noise=torch.randn(1, 4, 2, 8, 8))

    i2v = build_unet(tiny_config("ms_image2video")).eval()
    out = run_base_stage(i2v, text=None, negative_text=None, image_embedding=torch.randn(1, 1024), image_latent=None,
                         fps=8, num_frames=2, steps=2, guidance_scale=3.0, noise=torch.randn(1, 4, 2, 8, 8))
    assert out.shape == (1, 4, 2, 8, 8) and torch.isfinite(out).all()

    refiner = build_unet(tiny_config("ms_vid2vid_xl")).eval()
    out = run_refine_stage(refiner, torch.randn(1, 4, 2, 10, 8), text=text, negative_text=torch.zeros_like(text),
                           steps=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 4, 2, 10, 8) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="refine method"):
        run_refine_stage(refiner, out, text=text, negative_text=text, method="euler")


def test_base_stage_runs_with_fp8_weight_storage():
    """Weights stored in fp8 are computed in the UNet's compute dtype (the pipeline must not cast inputs to fp8)."""
    from helpers import random_unet
    from i2vgen_core import export_state_dict, load_unet

    unet = load_unet(export_state_dict(random_unet(), "vgen"), dtype=torch.float8_e4m3fn,
                     compute_dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    out = run_base_stage(unet, text=torch.randn(1, 77, 1024), negative_text=torch.randn(1, 77, 1024),
                         image_embedding=torch.randn(1, 1024), image_latent=torch.randn(1, 4, 8, 8), num_frames=3,
                         steps=2, generator=g)
    assert out.shape == (1, 4, 3, 8, 8) and torch.isfinite(out).all()
