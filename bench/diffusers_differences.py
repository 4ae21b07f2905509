"""What each difference from diffusers' I2VGenXLPipeline changes in the final latent, one switched at a time: the
figures of the README's table "Differences from diffusers' I2VGenXLPipeline".

    $COMFYUI_PYTHON bench/diffusers_differences.py $COMFYUI_PATH [DEMO_DIR]

The demo weights (``python -m i2vgen_core demo-weights DEMO_DIR``, default ./demo_models: full-size random text and
image encoders and VAE, the tiny random demo UNet) through ComfyUI's loaders and the pack's encode nodes; the
shipped single-stage workflow's prompts and image; 128x64 pixels (CLIP square 128), 4 frames, 50 DDIM steps, cfg 9,
fps 16, seed 8888; the core's DDIM (``run_base_stage``) in fp32. Each row changes one thing from what the pack does
to what diffusers does (or, for the last two, to ComfyUI's KSampler start and the ``clean`` last step) and prints
max |changed - pack| / max |pack| of the final latent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from comfy_env import REPO, setup  # noqa: E402

WORKFLOW = REPO / "workflows" / "api" / "i2vgen_xl_image_to_video.api.json"
WIDTH, HEIGHT, FRAMES, STEPS, CFG, FPS, SEED = 128, 64, 4, 50, 9.0, 16, 8888
DIFFUSERS_PAD, DIFFUSERS_SCALE = 49407, 0.18125


def main(argv: list[str]) -> int:
    """Print one line per difference."""
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    setup(argv[0])
    demo = Path(argv[1]) if len(argv) > 1 else REPO / "demo_models"

    import numpy as np
    import torch
    from PIL import Image

    import comfy.clip_vision
    import comfy.sd
    import comfy.utils
    from i2vgen_pkg.i2vgen_core import load_unet
    from i2vgen_pkg.i2vgen_core.config import VAE_LATENT_SCALE
    from i2vgen_pkg.i2vgen_core.diffusion.pipeline import run_base_stage
    from i2vgen_pkg.i2vgen_core.diffusion.samplers import ddim_timesteps
    from i2vgen_pkg.i2vgen_core.diffusion.schedules import alphas_cumprod
    from i2vgen_pkg.nodes.encode import I2VGenXLDetailEncode, I2VGenXLSemanticEncode

    torch.set_grad_enabled(False)
    workflow = json.loads(WORKFLOW.read_text())
    prompt, negative = workflow["6"]["inputs"]["text"], workflow["7"]["inputs"]["text"]
    clip = comfy.sd.load_clip(ckpt_paths=[str(demo / "text_encoders" / workflow["2"]["inputs"]["clip_name"])],
                              clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION)
    vision = comfy.clip_vision.load(str(demo / "clip_vision" / workflow["3"]["inputs"]["clip_name"]))
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(demo / "vae" / workflow["4"]["inputs"]["vae_name"])))
    unet = load_unet(str(demo / "diffusion_models" / workflow["1"]["inputs"]["unet_name"])).float().eval()
    rgb = np.asarray(Image.open(REPO / "workflows" / "inputs" / workflow["5"]["inputs"]["image"]).convert("RGB"))
    image = torch.from_numpy(rgb.astype(np.float32) / 255.0)[None]

    def text(t: str, pad: int = 0) -> torch.Tensor:
        tokens = clip.tokenize(t)
        if pad:
            for rows in tokens.values():
                for row in rows:
                    end = next(i for i, tok in enumerate(row) if tok[0] == 49407)
                    row[end + 1:] = [(pad,) + tuple(tok[1:]) for tok in row[end + 1:]]
        return clip.encode_from_tokens(tokens)[:, :77]

    (vision_out,) = I2VGenXLSemanticEncode().encode(vision, image, WIDTH)
    embedding = vision_out["image_embeds"][:1].float()
    (sampled,) = I2VGenXLDetailEncode().encode(vae, image, WIDTH, HEIGHT, "sample", SEED)
    (mean,) = I2VGenXLDetailEncode().encode(vae, image, WIDTH, HEIGHT, "mean", SEED)
    sampled, mean = sampled["samples"].float(), mean["samples"].float()
    pos, neg = text(prompt), text(negative)
    shape = (1, 4, FRAMES, HEIGHT // 8, WIDTH // 8)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(SEED))
    abar = alphas_cumprod("cosine_zero_snr")
    ksampler_start = float(1.0 - abar[int(ddim_timesteps(STEPS)[0])]) ** 0.5

    def run(**change) -> torch.Tensor:
        settings = {"text": pos, "negative_text": neg, "image_latent": sampled * VAE_LATENT_SCALE, "branch": 2.0,
                    "noise": noise, "final_alpha": "first", **change}
        unet.image_branch_scale = settings.pop("branch")
        return run_base_stage(unet, image_embedding=embedding, fps=FPS, num_frames=FRAMES, steps=STEPS,
                              guidance_scale=CFG, **settings)

    pack = run()
    rows = {
        "text pad token 49407 (prompt and negative)": run(text=text(prompt, DIFFUSERS_PAD),
                                                          negative_text=text(negative, DIFFUSERS_PAD)),
        'negative prompt ""': run(negative_text=text("")),
        "image latent scale 0.18125": run(image_latent=sampled * DIFFUSERS_SCALE),
        "image latent posterior mean instead of the sample": run(image_latent=mean * VAE_LATENT_SCALE),
        "image branch added once": run(branch=1.0),
        f"KSampler's start ({ksampler_start:.5f} x noise)": run(noise=noise * ksampler_start),
        "last DDIM step to 1 (final_step clean)": run(final_alpha="one"),
        "pad, image latent scale and image branch as diffusers at once": run(
            text=text(prompt, DIFFUSERS_PAD), negative_text=text(negative, DIFFUSERS_PAD),
            image_latent=sampled * DIFFUSERS_SCALE, branch=1.0),
    }
    size = pack.abs().max()
    print(f"final latent max |pack| {size.item():.4f}; {WIDTH}x{HEIGHT}, {FRAMES} frames, {STEPS} DDIM steps, "
          f"cfg {CFG}, seed {SEED}, demo weights at {demo}")
    for name, latent in rows.items():
        print(f"{name:66s} {((latent - pack).abs().max() / size).item():.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
