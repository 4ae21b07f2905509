"""Test-only ComfyUI extension: records every stage of the graphs the server runs, for test_vgen_end_to_end.py.

Loaded into a test server beside the pack (never shipped, no nodes of its own). When I2VGEN_RECORD_STAGES names a
file, it records, and saves there (torch.save) after each node:

- ``nodes``: each executed node's outputs, tensors only (``"<id>:<class>"`` -> {path: tensor}); a CONDITIONING's
  embedding and its extra keys, a LATENT's samples, an IMAGE, a CLIP vision output's embeddings;
- ``tokens``: the token ids ComfyUI's CLIP tokenizer gave each text; ``clip_pixels``: what the CLIP vision model saw;
- ``noise``: the start noise each sampling run was given (``comfy.sample.sample`` / ``sample_custom``);
- ``unet_calls``: each call of a MODEL's network (timestep, which batch rows are cond / uncond, input, output);
- ``steps``: each sampling step's guided prediction (``denoised``, after CFG) and sigma.

It only reads: every wrapped function returns what the original returned.
"""

from __future__ import annotations

import os

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

PATH = os.environ.get("I2VGEN_RECORD_STAGES")


def _tensors(value, prefix: str = "") -> dict:
    """{path: tensor} for the tensors in a node output (nested lists, tuples, dicts, objects with tensors)."""
    import torch

    found: dict = {}
    if torch.is_tensor(value):
        found[prefix or "value"] = value.detach().clone().cpu()
    elif isinstance(value, dict):
        for key, item in value.items():
            found.update(_tensors(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found.update(_tensors(item, f"{prefix}.{i}" if prefix else str(i)))
    elif type(value).__name__ == "Output" and hasattr(value, "image_embeds"):  # comfy.clip_vision.Output
        for key in ("image_embeds", "last_hidden_state", "penultimate_hidden_states"):
            if getattr(value, key, None) is not None:
                found.update(_tensors(getattr(value, key), f"{prefix}.{key}"))
    return found


def _install(path: str) -> None:
    import torch

    import comfy.clip_vision
    import comfy.sample
    import comfy.sd
    import execution

    record: dict = {"nodes": {}, "tokens": {}, "unet_calls": [], "steps": [], "noise": []}
    hooked: set = set()

    def save() -> None:
        torch.save(record, path)

    tokenize = comfy.sd.CLIP.tokenize

    def recorded_tokenize(self, text, *args, **kwargs):
        tokens = tokenize(self, text, *args, **kwargs)
        record["tokens"][text] = {key: [[t[0] for t in row] for row in rows] for key, rows in tokens.items()}
        return tokens

    comfy.sd.CLIP.tokenize = recorded_tokenize

    preprocess = comfy.clip_vision.clip_preprocess

    def recorded_preprocess(*args, **kwargs):
        pixels = preprocess(*args, **kwargs)
        record["clip_pixels"] = pixels.detach().clone().cpu()
        return pixels

    comfy.clip_vision.clip_preprocess = recorded_preprocess

    def noise_recorded(sample):
        def recorded(model, noise, *args, **kwargs):
            record["noise"].append(noise.detach().clone().cpu())
            return sample(model, noise, *args, **kwargs)

        return recorded

    comfy.sample.sample = noise_recorded(comfy.sample.sample)
    comfy.sample.sample_custom = noise_recorded(comfy.sample.sample_custom)

    def unet_hook(module, args, kwargs, output):
        options = kwargs.get("transformer_options", {}) or {}
        record["unet_calls"].append({"t": args[1].detach().clone().cpu(), "x": args[0].detach().clone().cpu(),
                                     "out": output.detach().clone().cpu(),
                                     "cond_or_uncond": list(options.get("cond_or_uncond", []))})

    def post_cfg(args):
        record["steps"].append({"sigma": args["sigma"].detach().clone().cpu(),
                                "denoised": args["denoised"].detach().clone().cpu()})
        return args["denoised"]

    def watch_model(patcher) -> None:
        net = getattr(getattr(patcher, "model", None), "diffusion_model", None)
        if net is None or id(net) in hooked:
            return
        hooked.add(id(net))
        net.register_forward_hook(unet_hook, with_kwargs=True)
        patcher.set_model_sampler_post_cfg_function(post_cfg)

    get_output_data = execution.get_output_data

    async def recorded_output_data(prompt_id, unique_id, obj, *args, **kwargs):
        result = await get_output_data(prompt_id, unique_id, obj, *args, **kwargs)
        output = result[0]
        for slot in output or []:
            for item in slot if isinstance(slot, list) else [slot]:
                if hasattr(item, "model") and hasattr(item, "set_model_sampler_post_cfg_function"):
                    watch_model(item)
        record["nodes"][f"{unique_id}:{type(obj).__name__}"] = _tensors(output)
        save()
        return result

    execution.get_output_data = recorded_output_data


if PATH:
    _install(PATH)
