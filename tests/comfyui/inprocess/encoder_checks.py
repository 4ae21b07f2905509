"""The encoder path against the original encoders, run inside ComfyUI's own Python (no server).

Usage: COMFYUI_PYTHON encoder_checks.py COMFYUI_PATH REPO WORKDIR  -> one JSON object per check on stdout.

The reference is ``open_clip_torch`` itself: a randomly initialised OpenCLIP ViT-H/14 (open_clip's own 'ViT-H-14'
configuration, ``pretrained=None``, nothing downloaded) computes the conditioning the way VGen / ModelScope do
(``open_clip.tokenize``: truncate to 77 with the end token last, pad with 0; token + position embedding, the first
23 of 24 blocks with the causal mask, ``ln_final``; image: PIL ``convert('RGB')``, BOX cover-resize to 1280x1280 and
centre crop (``CenterCropWide``), BILINEAR to 224, ``to_tensor``, clamp, CLIP mean/std, ``encode_image``).

The same weights are written in the three formats users have: VGen's ``open_clip_pytorch_model.bin`` (the open_clip
state dict, torch.save), and the hub's ``text_encoder/model.safetensors`` (transformers ``CLIPTextModel`` names) and
``image_encoder/model.safetensors`` (``CLIPVisionModelWithProjection`` names), converted here from the open_clip
names. ComfyUI's loader node classes (CLIPLoader type 'stable_diffusion', CLIPVisionLoader, LoadImage,
CLIPTextEncode) and the pack's I2VGenXLSemanticEncode / I2VGenXLConditioning then produce the conditioning the UNet
receives. ComfyUI's loaders only accept the real ViT-H shapes, so the towers are full size (fp32: 3.9 GB for
open_clip, freed before ComfyUI loads its copies).

Errors: ``max_abs`` = max |ours - reference|, ``rel`` = max_abs / max |reference|.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inprocess_checks import run_checks, selected, setup  # noqa: E402  (the shared in-process runner)

CHECKS = []
STATE: dict = {}

#: name -> prompt. 'long' is past 77 tokens; 'non_ascii_*' exercise the text cleaning.
PROMPTS = {
    "empty": "",
    "ordinary": "A red fox jumping over a snowy log in the forest, cinematic lighting, 4k",
    "non_ascii": "Ein Mädchen läuft über die Straße, café crème, 一只猫在弹钢琴, emoji 🐱🎹",
    "non_ascii_cleaned": "Naïve “quoted” text with ﬁne ligatures and ＦＵＬＬＷＩＤＴＨ letters &amp; entities",
    "long": ("Slowly, an astronaut riding a horse on the surface of the moon, with the earth rising slowly behind them, "
             "dust clouds kicking up around the hooves, long cinematic tracking shot, volumetric light, film "
             "grain, ultra detailed, photorealistic textures, dramatic shadows, a flag waving although there is no "
             "air, stars twinkling in the black sky, a small rover parked near a crater, reflections on the "
             "visor, slow motion, highly detailed spacesuit with patches and scratches"),
}

#: name -> (file name, mode, width, height).
IMAGES = {
    "non_square": ("wide.png", "RGB", 640, 360),
    "tiny": ("tiny.png", "RGB", 7, 5),
    "rgba": ("rgba.png", "RGBA", 300, 200),
    "greyscale": ("grey.png", "L", 250, 400),
    "portrait_jpeg": ("portrait.jpg", "RGB", 333, 517),
    "square_512": ("square.png", "RGB", 512, 512),
}


def check(fn):
    CHECKS.append(fn)
    return fn


def errors(ours, ref) -> dict:
    """max abs and relative error (to max |ref|) of two tensors."""
    diff = (ours.double() - ref.double()).abs().max().item()
    scale = ref.double().abs().max().item()
    return {"max_abs": diff, "rel": diff / max(scale, 1e-30), "ref_max": scale}


# ----------------------------------------------------------------------------------------- conversions (facts)
def _blocks_to_hf(sd: dict, src: str, dst: str, layers: int) -> dict:
    """open_clip residual blocks `src`transformer.resblocks.N -> transformers `dst`encoder.layers.N."""
    out = {}
    names = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
             "attn.out_proj": "self_attn.out_proj"}
    for i in range(layers):
        a, b = f"{src}transformer.resblocks.{i}.", f"{dst}encoder.layers.{i}."
        for old, new in names.items():
            for p in ("weight", "bias"):
                out[f"{b}{new}.{p}"] = sd[f"{a}{old}.{p}"]
        for p in ("weight", "bias"):
            q, k, v = sd[f"{a}attn.in_proj_{p}"].chunk(3, dim=0)  # packed [q; k; v] rows
            out[f"{b}self_attn.q_proj.{p}"] = q
            out[f"{b}self_attn.k_proj.{p}"] = k
            out[f"{b}self_attn.v_proj.{p}"] = v
    return out


def text_to_hf(sd: dict) -> dict:
    """open_clip text tower -> transformers CLIPTextModel state dict (the hub's text_encoder; no projection)."""
    layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transformer.resblocks."))
    out = {"text_model.embeddings.token_embedding.weight": sd["token_embedding.weight"],
           "text_model.embeddings.position_embedding.weight": sd["positional_embedding"],
           "text_model.final_layer_norm.weight": sd["ln_final.weight"],
           "text_model.final_layer_norm.bias": sd["ln_final.bias"]}
    out.update(_blocks_to_hf(sd, "", "text_model.", layers))
    return out


def vision_to_hf(sd: dict) -> dict:
    """open_clip visual tower -> transformers CLIPVisionModelWithProjection state dict (the hub's image_encoder)."""
    layers = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith("visual.transformer.resblocks."))
    v = "vision_model."
    out = {f"{v}embeddings.class_embedding": sd["visual.class_embedding"],
           f"{v}embeddings.patch_embedding.weight": sd["visual.conv1.weight"],
           f"{v}embeddings.position_embedding.weight": sd["visual.positional_embedding"],
           f"{v}pre_layrnorm.weight": sd["visual.ln_pre.weight"],  # (sic) transformers' name
           f"{v}pre_layrnorm.bias": sd["visual.ln_pre.bias"],
           f"{v}post_layernorm.weight": sd["visual.ln_post.weight"],
           f"{v}post_layernorm.bias": sd["visual.ln_post.bias"],
           "visual_projection.weight": sd["visual.proj"].t()}  # open_clip: x @ proj; Linear: x @ W.T
    out.update(_blocks_to_hf(sd, "visual.", v, layers))
    return out


def save_safetensors(sd: dict, path: Path, dtype=None) -> None:
    """Write a safetensors file one tensor at a time (the format: 8-byte little-endian header length, JSON header
    of dtype / shape / data offsets, raw little-endian data), so no second copy of a multi-GB state dict is built."""
    import torch

    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
    path.parent.mkdir(parents=True, exist_ok=True)
    header, offset = {}, 0
    for key, t in sd.items():
        dt = dtype or t.dtype
        size = t.numel() * torch.empty((), dtype=dt).element_size()
        header[key] = {"dtype": names[dt], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for key, t in sd.items():
            f.write(t.detach().to(dtype or t.dtype).contiguous().view(torch.uint8).numpy().tobytes())


# ----------------------------------------------------------------------------------------- references
def openclip_text(model, prompts: list[str]):
    """VGen / ModelScope FrozenOpenCLIPEmbedder 'penultimate': tokenize (pad 0), all blocks but the last, ln_final."""
    import open_clip
    import torch

    tokens = open_clip.tokenize(prompts)
    blocks = model.transformer.resblocks
    with torch.no_grad():
        x = model.token_embedding(tokens) + model.positional_embedding
        if not getattr(model.transformer, "batch_first", True):
            x = x.permute(1, 0, 2)
        for block in blocks[:len(blocks) - 1]:
            x = block(x, attn_mask=model.attn_mask)
        if not getattr(model.transformer, "batch_first", True):
            x = x.permute(1, 0, 2)
        return tokens, model.ln_final(x)


def vgen_clip_pixels(path: Path, square: int = 1280, size: int = 224):
    """VGen's vit_trans on a file: Image.open, convert('RGB') unless RGB, CenterCropWide (BOX) to a square, PIL
    BILINEAR resize, to_tensor, clamp, CLIP normalise -> [1, 3, size, size]."""
    import numpy as np
    import torch
    from PIL import Image

    img = Image.open(path)
    if img.mode != "RGB":
        img = img.convert("RGB")
    scale = min(img.size[0] / square, img.size[1] / square)
    img = img.resize((round(img.width // scale), round(img.height // scale)), resample=Image.BOX)
    x1, y1 = (img.width - square) // 2, (img.height - square) // 2
    img = img.crop((x1, y1, x1 + square, y1 + square))
    img = img.resize((size, size), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).clamp(0, 1)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)


def write_images(folder: Path) -> None:
    """Deterministic test pictures: smooth colour gradients + noise + a few hard edges."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, (fname, mode, w, h) in IMAGES.items():
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        r = 127 + 120 * np.sin(xx / max(w, 1) * 6.0 + 1.0)
        g = 127 + 120 * np.cos(yy / max(h, 1) * 5.0)
        b = 255 * ((xx // max(1, w // 7) + yy // max(1, h // 5)) % 2)
        rgb = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
        if mode == "RGBA":
            alpha = np.clip(255 * xx / max(w - 1, 1), 0, 255).astype(np.uint8)[..., None]
            img = Image.fromarray(np.concatenate([rgb, alpha], -1), "RGBA")
        elif mode == "L":
            img = Image.fromarray(rgb, "RGB").convert("L")
        else:
            img = Image.fromarray(rgb, "RGB")
        img.save(folder / fname, quality=90) if fname.endswith(".jpg") else img.save(folder / fname)


# ----------------------------------------------------------------------------------------- ComfyUI side
def comfy_nodes():
    import nodes as comfy_nodes_module  # ComfyUI's top-level nodes.py

    return comfy_nodes_module


def pack_nodes():
    from i2vgen_pkg.nodes import encode

    return encode


def comfy_text(clip_name: str, prompt: str, clip=None):
    """CLIPLoader(type stable_diffusion) + CLIPTextEncode -> I2VGenXLConditioning's positive text tensor."""
    n = comfy_nodes()
    if clip is None:
        clip = n.CLIPLoader().load_clip(clip_name, type="stable_diffusion")[0]
    cond = n.CLIPTextEncode().encode(clip, prompt)[0]
    enc = pack_nodes()
    positive, _neg, _lat = enc.I2VGenXLConditioning().condition(width=64, height=64, length=2, fps=16, batch_size=1,
                                                                positive=cond)["result"]
    return clip, positive[0]


def comfy_image_embeds(clip_vision, image_name: str):
    """LoadImage + I2VGenXLSemanticEncode + I2VGenXLConditioning -> the image embedding the UNet receives."""
    n = comfy_nodes()
    image = n.LoadImage().load_image(image_name)[0]
    enc = pack_nodes()
    out = enc.I2VGenXLSemanticEncode().encode(clip_vision, image)[0]
    positive, negative, _lat = enc.I2VGenXLConditioning().condition(width=64, height=64, length=2, fps=16,
                                                                    batch_size=1, clip_vision_output=out)["result"]
    assert float(negative[0][1]["i2vgen_image_embedding"].abs().max()) == 0.0
    return positive[0]


def tiny_i2vgen_model():
    """A tiny random I2VGen-XL MODEL (real 1024-wide text and image conditioning) in ComfyUI's BaseModel."""
    import torch
    import comfy.model_patcher
    from i2vgen_pkg.i2vgen_core.weights.demo import demo_unet
    from i2vgen_pkg.nodes.comfy_model import I2VGenXLModel, load_comfy_unet

    core = demo_unet("i2vgen_xl", 0)
    unet = load_comfy_unet(core.state_dict(), dtype=torch.float32, device="cpu", load_device=torch.device("cpu"),
                           config=core.config)
    model = I2VGenXLModel(unet, weight_dtype=torch.float32)
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def unet_inputs(patcher, entry) -> dict:
    """The network inputs ComfyUI builds from one conditioning entry (``BaseModel.extra_conds``)."""
    import torch

    values = dict(entry[1])
    values.setdefault("i2vgen_image_embedding", torch.zeros(1, 1024))
    values.setdefault("i2vgen_image_latent", torch.zeros(1, 4, 8, 8))
    out = patcher.model.extra_conds(noise=torch.zeros(1, 4, 2, 8, 8), cross_attn=entry[0], **values)
    return {"text": out["c_crossattn"].cond, "image_embedding": out["image_embedding"].cond}


def set_text_encoder_fp32(on: bool) -> None:
    import comfy.cli_args

    comfy.cli_args.args.fp32_text_enc = on


# ----------------------------------------------------------------------------------------- checks
@check
def conversion_matches_transformers():
    """The test's open_clip -> transformers conversion (reduced width, real layout) reproduces open_clip in
    transformers' own CLIPTextModel / CLIPVisionModelWithProjection."""
    import open_clip
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 224, "layers": 3, "width": 80, "head_width": 20,
                                           "patch_size": 14},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 3}}
    model = open_clip.CLIP(**cfg).eval()
    sd = model.state_dict()
    tcfg = transformers.CLIPTextConfig(vocab_size=49408, hidden_size=64, intermediate_size=256,
                                       num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=77,
                                       hidden_act="gelu", projection_dim=32)
    vcfg = transformers.CLIPVisionConfig(hidden_size=80, intermediate_size=320, num_hidden_layers=3,
                                         num_attention_heads=4, image_size=224, patch_size=14, hidden_act="gelu",
                                         projection_dim=32)
    # written and read back as hub folders (config.json + model.safetensors), as diffusers / transformers read them
    folder = Path(STATE["work"]) / "tiny_hub"
    tcfg.save_pretrained(folder / "text_encoder")
    vcfg.save_pretrained(folder / "image_encoder")
    save_safetensors(text_to_hf(sd), folder / "text_encoder" / "model.safetensors")
    save_safetensors(vision_to_hf(sd), folder / "image_encoder" / "model.safetensors")
    text, info_t = transformers.CLIPTextModel.from_pretrained(folder / "text_encoder", output_loading_info=True)
    vision, info_v = transformers.CLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder",
                                                                                 output_loading_info=True)
    for info in (info_t, info_v):
        assert not info["missing_keys"] and not info["unexpected_keys"], info
    text, vision = text.eval(), vision.eval()
    tokens, ref = openclip_text(model, ["a photo of a cat", ""])
    pix = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        hs = text(input_ids=tokens, output_hidden_states=True).hidden_states[-2]
        ours_t = getattr(text, "text_model", text).final_layer_norm(hs)
        ours_v = vision(pixel_values=pix).image_embeds
        ref_v = model.encode_image(pix)
    et, ev = errors(ours_t, ref), errors(ours_v, ref_v)
    assert et["rel"] < 1e-5 and ev["rel"] < 1e-5, (et, ev)
    return {"text": et, "vision": ev}


@check
def tokenization_matches_open_clip():
    """ComfyUI's SD2 tokenizer gives open_clip's ids (pad 0) except where open_clip's ftfy/HTML cleaning or its
    truncation at 77 applies."""
    import open_clip
    from comfy.text_encoders.sd2_clip import SD2Tokenizer

    tok = SD2Tokenizer()
    out = {}
    for name, prompt in PROMPTS.items():
        ref = open_clip.tokenize([prompt])[0].tolist()
        chunks = tok.tokenize_with_weights(prompt)["h"]
        ours = [t[0] for t in chunks[0]]
        first_diff = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), None)
        out[name] = {"equal": ours == ref, "chunks": len(chunks), "first_difference_at": first_diff,
                     "pad_is_0": ours[-1] == 0 if len(ours) == 77 and 0 in ref else None}
    for name in ("empty", "ordinary", "non_ascii"):
        assert out[name]["equal"] and out[name]["chunks"] == 1, (name, out[name])
    assert out["empty"]["pad_is_0"], out["empty"]
    assert not out["non_ascii_cleaned"]["equal"], "open_clip's ftfy/HTML cleaning now matches: update README"
    assert out["long"]["chunks"] > 1, out["long"]
    return out


@check
def vae_release_files_load():
    """The SD2.1 VAE as the releases ship it: the hub's vae file (diffusers names) loads in VAELoader; VGen's
    v2-1_512-ema-pruned.ckpt (ldm names under first_stage_model.) is refused by VAELoader and loads after
    i2vgen_core.weights.encoder_files extracts it, with weights and latents identical to the hub file's."""
    import torch
    import comfy.model_management as mm
    import folder_paths
    from i2vgen_pkg.i2vgen_core.weights import demo as demo_weights
    from i2vgen_pkg.i2vgen_core.weights.encoder_files import split_release_file

    work = Path(STATE["work"]) / "vae"
    hub = next(f for f in demo_weights.DEMO_FILES if f.kind == "vae_sd21")
    demo_weights.write_demo_file(work, hub)
    folder_paths.add_model_folder_path("vae", str(work / hub.folder), is_default=True)
    loader = comfy_nodes().VAELoader()
    vae_hub = loader.load_vae(hub.name)[0]
    ldm = vae_hub.first_stage_model.state_dict()
    g = torch.Generator().manual_seed(0)
    ckpt = {"state_dict": {**{f"first_stage_model.{k}": v for k, v in ldm.items()},
                           "model.diffusion_model.out.2.weight": torch.randn(4, 320, 3, 3, generator=g),
                           "cond_stage_model.model.ln_final.weight": torch.ones(1024)}, "global_step": 110000}
    torch.save(ckpt, work / hub.folder / "v2-1_512-ema-pruned.ckpt")
    try:
        loader.load_vae("v2-1_512-ema-pruned.ckpt")
        refused = None
    except Exception as err:  # ComfyUI: "ERROR: VAE is invalid"
        refused = f"{type(err).__name__}: {str(err).splitlines()[0]}"
    assert refused, "VAELoader now takes the SD2.1 checkpoint: update the README"
    split_release_file(work / hub.folder / "v2-1_512-ema-pruned.ckpt", work / hub.folder)
    vae_ckpt = loader.load_vae("v2-1_512-ema-pruned.vae.safetensors")[0]
    image = torch.rand(1, 64, 96, 3, generator=g)
    a, b = vae_hub.encode(image), vae_ckpt.encode(image)
    same_weights = all(torch.equal(v, vae_ckpt.first_stage_model.state_dict()[k]) for k, v in ldm.items())
    del vae_hub, vae_ckpt
    mm.unload_all_models()
    assert same_weights and torch.equal(a, b)
    return {"hub_file": hub.name, "ckpt_in_VAELoader": refused, "extracted_latent_max_abs": 0.0,
            "latent_shape": list(a.shape)}


@check
def long_prompts_reach_the_unet_as_77_tokens():
    """A prompt past 77 tokens (ComfyUI: several 77-token chunks) reaches the UNet as its first 77 tokens, so a
    long positive and a short negative sample exactly like the truncated prompt. Without that, ComfyUI's cond
    batching tiles the shorter text (harmless for plain cross-attention, not for I2VGen-XL, whose context also holds
    68 image tokens)."""
    import torch
    import comfy.sample

    patcher = tiny_i2vgen_model()
    g = torch.Generator().manual_seed(0)
    text_long = torch.randn(1, 154, 1024, generator=g)
    text_neg = torch.randn(1, 77, 1024, generator=g)
    values = {"i2vgen_image_embedding": torch.randn(1, 1024, generator=g),
              "i2vgen_image_latent": torch.randn(1, 4, 8, 8, generator=g), "i2vgen_fps": 16}
    neg_values = {**values, "i2vgen_image_embedding": torch.zeros(1, 1024)}
    got = unet_inputs(patcher, [text_long, values])["text"]
    assert torch.equal(got, text_long[:, :77]), tuple(got.shape)
    latent = torch.zeros(1, 4, 3, 8, 8)
    noise = torch.randn(latent.shape, generator=g)

    def run(pos_text):
        return comfy.sample.sample(patcher, noise, 2, 7.5, "euler", "normal", [[pos_text, values]],
                                   [[text_neg, neg_values]], latent, disable_pbar=True, seed=0)

    a, b = run(text_long), run(text_long[:, :77])
    same = errors(a, b)
    # why: the network on the negative's text tiled to 154 tokens vs the 77 tokens themselves
    unet = patcher.model.diffusion_model
    x, t = torch.randn(1, 4, 3, 8, 8, generator=g), torch.tensor([500.0])
    kw = {"image_embedding": torch.zeros(1, 1024), "image_latent": values["i2vgen_image_latent"],
          "fps": torch.tensor([16])}
    with torch.no_grad():
        tiled = unet(x, t, context=text_neg.repeat(1, 2, 1), **kw)
        plain = unet(x, t, context=text_neg, **kw)
    tiling = errors(tiled, plain)
    assert same["max_abs"] == 0.0, same
    assert tiling["rel"] > 1e-3, tiling
    return {"sampled_long_vs_truncated": same, "tiled_text_changes_output_rel": tiling["rel"]}


def _build_reference(work: Path) -> None:
    """Full-size random OpenCLIP ViT-H/14: reference outputs, then the three file formats; frees the model."""
    import open_clip
    import torch

    torch.manual_seed(1234)
    model = open_clip.create_model("ViT-H-14", pretrained=None).eval()
    nparams = sum(p.numel() for p in model.parameters())
    names = list(PROMPTS)
    tokens, text_ref = openclip_text(model, [PROMPTS[n] for n in names])
    pixels = {n: vgen_clip_pixels(work / "input" / IMAGES[n][0]) for n in IMAGES}
    with torch.no_grad():
        img_ref = {n: model.encode_image(p)[0] for n, p in pixels.items()}
    STATE["text_ref"] = dict(zip(names, text_ref))
    STATE["tokens"] = dict(zip(names, tokens))
    STATE["image_ref"] = img_ref
    STATE["params"] = nparams
    sd = model.state_dict()
    torch.save(sd, work / "vgen" / "open_clip_pytorch_model.bin")
    save_safetensors(text_to_hf(sd), work / "hub" / "text_encoder" / "model.safetensors")
    save_safetensors(vision_to_hf(sd), work / "hub" / "image_encoder" / "model.safetensors")
    save_safetensors(text_to_hf(sd), work / "hub" / "text_encoder" / "model.fp16.safetensors", torch.float16)
    save_safetensors(vision_to_hf(sd), work / "hub" / "image_encoder" / "model.fp16.safetensors", torch.float16)
    del sd, model
    gc.collect()
    # the pack's splitter: one file per tower from VGen's .bin (python -m i2vgen_core split-encoders)
    from i2vgen_pkg.i2vgen_core.weights.encoder_files import split_release_file

    split_release_file(work / "vgen" / "open_clip_pytorch_model.bin", work / "vgen" / "split")
    gc.collect()


def _register_folders(work: Path) -> None:
    import folder_paths

    (work / "vgen").mkdir(parents=True, exist_ok=True)
    folder_paths.add_model_folder_path("text_encoders", str(work / "hub"), is_default=True)
    folder_paths.add_model_folder_path("text_encoders", str(work / "vgen"))
    folder_paths.add_model_folder_path("clip_vision", str(work / "hub"), is_default=True)
    folder_paths.add_model_folder_path("clip_vision", str(work / "vgen"))
    folder_paths.set_input_directory(str(work / "input"))


#: (format label, text encoder name, clip vision name, fp32 text-encoder storage?, images). Preprocessing does not
#: depend on the file, so the later formats use two images (a full-size vision forward is the slow part on a CPU).
FORMATS = (
    ("hub_fp32", "text_encoder/model.safetensors", "image_encoder/model.safetensors", True, tuple(IMAGES)),
    ("vgen_bin", "open_clip_pytorch_model.bin", "open_clip_pytorch_model.bin", True, ("non_square", "rgba")),
    ("hub_fp16_file_comfy_default", "text_encoder/model.fp16.safetensors", "image_encoder/model.fp16.safetensors",
     False, ("non_square", "greyscale")),
    ("vgen_bin_split", "split/open_clip_pytorch_model.text.safetensors",
     "split/open_clip_pytorch_model.vision.safetensors", True, ("tiny",)),
)

#: bounds on the relative error: fp32 end to end; fp16 weights (ComfyUI's default storage on every device)
FP32_REL, FP16_REL = 1e-5, 2e-2


#: what the reference run hands to the format runs (each format runs in a process of its own: a clean heap)
REFERENCE_KEYS = ("text_ref", "tokens", "image_ref", "params", "long_first_diff", "cleaned_first_diff")


def rss_gib() -> float:
    """Current resident set size of this process, GiB."""
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return round(kb / 2**20, 2)


def peak_rss_gib() -> float:
    """Peak resident set size of this process so far, GiB."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def _format_check(label: str, text_name: str, vision_name: str, fp32: bool, images: tuple) -> dict:
    import torch
    import comfy.model_management as mm
    import comfy.utils

    work = Path(STATE["work"])
    if "text_ref" not in STATE:
        STATE.update(torch.load(work / "reference.pt", weights_only=True))
        _register_folders(work)
    # ComfyUI's --mmap-torch-files: the 3.9 GB .bin is mapped rather than read into the heap (same tensors)
    comfy.utils.MMAP_TORCH_FILES = True

    set_text_encoder_fp32(fp32)
    try:
        bound = FP32_REL if fp32 else FP16_REL
        out = {"text": {}, "image": {}}
        clip = None
        unet = tiny_i2vgen_model()
        for name in PROMPTS:
            clip, entry = comfy_text(text_name, PROMPTS[name], clip)
            ours = unet_inputs(unet, entry)["text"]  # what the UNet receives
            ref = STATE["text_ref"][name]
            assert tuple(ours.shape) == (1, 77, 1024), (name, tuple(ours.shape))
            e = errors(ours[0], ref)
            e["encoded_tokens"] = int(entry[0].shape[1])  # ComfyUI: 77 per chunk
            if name == "non_ascii_cleaned":
                # open_clip cleans the text (ftfy, HTML entities) before tokenizing; ComfyUI does not
                first = STATE["cleaned_first_diff"]
                e["equal_prefix_tokens"] = first
                e["prefix_rel"] = errors(ours[0, :first], ref[:first])["rel"]
                assert e["prefix_rel"] < bound, e
            else:
                assert e["rel"] < bound, (name, e)
            out["text"][name] = e
        out["text_encoder_weights"] = str(next(clip.cond_stage_model.parameters()).dtype)
        out["rss_gib_after_text"] = rss_gib()
        del clip
        mm.unload_all_models()
        gc.collect()
        vision = comfy_nodes().CLIPVisionLoader().load_clip(vision_name)[0]
        out["vision_weights"] = str(next(vision.model.parameters()).dtype)
        for name in images:
            entry = comfy_image_embeds(vision, IMAGES[name][0])
            emb = unet_inputs(unet, entry)["image_embedding"]
            ref = STATE["image_ref"][name]
            assert tuple(emb.shape) == (1, 1024), emb.shape
            e = errors(emb[0], ref)
            if name == "square_512":
                # 512 // (512 / 1280) == 1279.0: the original resizes to 1279 and its crop adds a black column
                e["exact_crop_rel"] = _exact_crop_error(vision, name, ref)
                assert e["exact_crop_rel"] < bound, e
            else:
                assert e["rel"] < bound, (name, e)
            out["image"][name] = e
        out["rss_gib_after_images"] = rss_gib()
        del vision
        mm.unload_all_models()
        gc.collect()
        mm.soft_empty_cache()
        out["format"] = label
        out["bound_rel"] = bound
        out["peak_rss_gib"] = peak_rss_gib()
        return out
    finally:
        set_text_encoder_fp32(False)
        torch.set_grad_enabled(True)


def _exact_crop_error(vision, name: str, ref) -> float:
    """Relative error with the original's one-pixel-short resize reproduced (core ``exact=True``)."""
    import torch
    from i2vgen_pkg.i2vgen_core.video import preprocess as pre

    image = comfy_nodes().LoadImage().load_image(IMAGES[name][0])[0]
    pixels = pre.clip_image_input(image[..., :3].float(), square_size=1280, size=224, quantize=True, exact=True)
    emb = vision.encode_image(pixels)["image_embeds"]
    return errors(emb[0], ref)["rel"]


def _make_format_check(label: str, text_name: str, vision_name: str, fp32: bool, images: tuple):
    def fn():
        return _format_check(label, text_name, vision_name, fp32, images)

    fn.__name__ = f"format_{label}"
    fn.__doc__ = f"{label}: text {text_name}, vision {vision_name}"
    return fn


@check
def full_size_reference_built():
    """Random full-size OpenCLIP ViT-H/14 (open_clip 'ViT-H-14'), reference outputs and the three file formats."""
    import open_clip
    from comfy.text_encoders.sd2_clip import SD2Tokenizer

    work = Path(STATE["work"])
    write_images(work / "input")
    _register_folders(work)
    _build_reference(work)
    # where ComfyUI's tokens first differ from open_clip's (long: chunking; cleaned: ftfy/HTML)
    tok = SD2Tokenizer()
    for key, name in (("long_first_diff", "long"), ("cleaned_first_diff", "non_ascii_cleaned")):  # noqa
        ours = [t[0] for t in tok.tokenize_with_weights(PROMPTS[name])["h"][0]]
        ref = STATE["tokens"][name].tolist()
        STATE[key] = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), 77)
    import torch

    torch.save({k: STATE[k] for k in REFERENCE_KEYS}, work / "reference.pt")
    sizes = {p.relative_to(work).as_posix(): p.stat().st_size for p in work.rglob("*") if p.is_file()
             and p.suffix in (".bin", ".safetensors")}
    return {"open_clip": open_clip.__version__, "params": STATE["params"], "files": sizes,
            "long_first_diff": STATE["long_first_diff"], "cleaned_first_diff": STATE["cleaned_first_diff"],
            "peak_rss_gib": peak_rss_gib()}


for _fmt in FORMATS:
    CHECKS.append(_make_format_check(*_fmt))


#: checks that run without open_clip_torch (the rest report a skip where it is missing)
WITHOUT_OPEN_CLIP = ("vae_release_files_load", "long_prompts_reach_the_unet_as_77_tokens")


def main() -> int:
    comfy_root, repo, work = sys.argv[1], sys.argv[2], sys.argv[3]
    STATE["work"] = work
    try:
        import open_clip  # noqa: F401
        missing = None
    except ImportError as err:
        missing = (f"open_clip_torch is not importable in {sys.executable} (the reference encoder; install it there "
                   f"with '{sys.executable} -m pip install open_clip_torch'): {err}")
    setup(comfy_root, repo)
    run_checks(CHECKS, selected(sys.argv, 4),
               lambda fn: missing if missing and fn.__name__ not in WITHOUT_OPEN_CLIP else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
