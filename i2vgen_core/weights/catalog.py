"""Where every model file the pack uses comes from and where it goes in ComfyUI: the one table.

The README's "Where the real weights go" table, the loader's missing-model messages, the frontend's on-node help
(GET /i2vgen-xl/model_files) and the ``properties.models`` metadata of the shipped workflows are all made from
MODEL_FILES; tests check that they agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..config import VARIANT_NAMES

HUB = "https://huggingface.co"


@dataclass(frozen=True)
class ModelFile:
    """One downloadable file: its role, the name the workflows use, its public source and its ComfyUI folder."""

    role: str  # unet | text_encoder | clip_vision | vae
    variant: str | None  # family member of a UNet file (i2vgen_xl, ms_image2video, ms_vid2vid_xl), else None
    name: str  # file name in the ComfyUI folder (what the workflows' loader widgets hold)
    repo: str  # Hugging Face repository
    path: str  # path inside the repository
    folder: str  # ComfyUI models/ sub-folder
    loader: str  # the node that loads it
    note: str = ""

    @property
    def url(self) -> str:
        """Direct download URL on the Hugging Face hub."""
        return f"{HUB}/{self.repo}/resolve/main/{self.path}"

    @property
    def page(self) -> str:
        """The repository's page."""
        return f"{HUB}/{self.repo}"

    def as_dict(self) -> dict:
        """Plain dict with url and page, for JSON."""
        return {**asdict(self), "url": self.url, "page": self.page}


MODEL_FILES: tuple[ModelFile, ...] = (
    ModelFile("unet", "i2vgen_xl", "i2vgen_xl.fp16.safetensors", "ali-vilab/i2vgen-xl",
              "unet/diffusion_pytorch_model.fp16.safetensors", "diffusion_models", "I2VGenXLModelLoader",
              "I2VGen-XL UNet, diffusers layout, fp16 (2.84 GB); models/i2vgen/ works too"),
    ModelFile("unet", "i2vgen_xl", "i2vgen_xl_00854500.pth", "ali-vilab/i2vgen-xl", "models/i2vgen_xl_00854500.pth",
              "diffusion_models", "I2VGenXLModelLoader", "the same I2VGen-XL UNet, VGen's original fp32 file"),
    ModelFile("unet", "ms_image2video", "base_03_alldata_fps_v_80g_0789000.pth", "ali-vilab/MS-Image2Video",
              "base_03_alldata_fps_v_80g_0789000.pth", "diffusion_models", "I2VGenXLModelLoader",
              "MS-Image2Video, the cascade's base stage"),
    ModelFile("unet", "ms_vid2vid_xl", "non_ema_0035000.pth", "ali-vilab/MS-Vid2Vid-XL", "non_ema_0035000.pth",
              "diffusion_models", "I2VGenXLModelLoader", "MS-Vid2Vid-XL, the cascade's refinement stage"),
    ModelFile("text_encoder", None, "i2vgen_xl_text_encoder.fp16.safetensors", "ali-vilab/i2vgen-xl",
              "text_encoder/model.fp16.safetensors", "text_encoders", "CLIPLoader",
              "OpenCLIP-H text encoder; load with type stable_diffusion"),
    ModelFile("clip_vision", None, "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors", "ali-vilab/i2vgen-xl",
              "image_encoder/model.fp16.safetensors", "clip_vision", "CLIPVisionLoader",
              "CLIP-ViT-H-14 image encoder"),
    ModelFile("vae", None, "i2vgen_xl_vae.fp16.safetensors", "ali-vilab/i2vgen-xl",
              "vae/diffusion_pytorch_model.fp16.safetensors", "vae", "VAELoader", "SD2.1 VAE"),
)


def file_named(name: str) -> ModelFile | None:
    """The table entry for a ComfyUI file name (as in a loader widget), or None."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return next((f for f in MODEL_FILES if f.name == base), None)


def files_for(role: str, variant: str | None = None) -> list[ModelFile]:
    """Entries of one role (and variant, for UNets)."""
    return [f for f in MODEL_FILES if f.role == role and (variant is None or f.variant == variant)]


def file_for(role: str, variant: str | None = None, ending: str = "") -> ModelFile:
    """The one entry of a role (and variant, and file-name ending, e.g. ".pth"); ValueError unless exactly one."""
    found = [f for f in files_for(role, variant) if f.name.endswith(ending)]
    if len(found) != 1:
        what = " ".join(part for part in (role, variant, ending and f"*{ending}") if part)
        raise ValueError(f"{len(found)} model files match {what}, expected one")
    return found[0]


def download_hint(f: ModelFile) -> str:
    """One sentence: which file, from where, into which folder, under which name."""
    return (f"download {f.path} from {f.page} ({f.url}) into ComfyUI/models/{f.folder}/ as {f.name} "
            f"({VARIANT_NAMES.get(f.variant or '', f.note)})")


def missing_unet_message(name: str | None = None) -> str:
    """What to do when the UNet loader has no (or not this) checkpoint."""
    head = (f"The UNet checkpoint '{name}' is not in ComfyUI/models/diffusion_models or models/i2vgen."
            if name else "No I2VGen-XL family checkpoint found in ComfyUI/models/diffusion_models or models/i2vgen.")
    wanted = [file_named(name)] if name and file_named(name) else files_for("unet")
    hints = "; ".join(download_hint(f) for f in wanted)
    return f"{head} To get it: {hints}. Then press R (refresh) in the browser."


def readme_table() -> str:
    """The README's "Where the real weights go" table (markdown)."""
    lines = ["| file in the repository | from | ComfyUI folder | save as (the workflows' name) | loader |",
             "|---|---|---|---|---|"]
    for f in MODEL_FILES:
        lines.append(f"| `{f.path}` ({f.note}) | [`{f.repo}`]({f.page}) | `models/{f.folder}/` | `{f.name}` | "
                     f"`{f.loader}` |")
    return "\n".join(lines)


def workflow_models(names: list[str]) -> list[dict]:
    """ComfyUI's ``properties.models`` entries ({name, url, directory}) for the given file names."""
    out = []
    for name in names:
        f = file_named(name)
        if f is None:
            raise KeyError(f"{name} is not in i2vgen_core.weights.catalog.MODEL_FILES")
        out.append({"name": f.name, "url": f.url, "directory": f.folder})
    return out
