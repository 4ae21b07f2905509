"""The spatio-temporal UNet shared by I2VGen-XL, MS-Image2Video and MS-Vid2Vid-XL."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .attention import resolve_backend
from ..config import UNetConfig
from .hooks import ForwardHooks, FreeU, apply_all
from .ops import torch_ops
from ..sizes import check_latent_size
from .layers import (Attention, Downsample, ImageTemporalEncoder, ResBlock, SpatialTransformer, TemporalTransformer,
                     Upsample, timestep_embedding)


class I2VGenUNet(nn.Module):
    """One configurable network for the whole family; see `UNetConfig` and `i2vgen_core.config.variant_config`.

    Parameter names follow the original (VGen / ModelScope) layout, so those checkpoints load as they are and
    diffusers checkpoints are renamed on load.
    """

    def __init__(self, config: UNetConfig, ops=None):
        super().__init__()
        ops = ops or torch_ops
        self.config = config
        self.image_branch_scale = 2.0  # the original training code adds the image branch twice
        self.compute_dtype: torch.dtype | None = None  # set when weights are stored narrower (fp8) than compute
        self._ops = ops
        self.channels_last = False  # the trunk's layout (NHWC when True), see speed.levers.set_channels_last
        self.freeu: FreeU | None = None  # see enable_freeu
        self.cuda_graphs = None  # a speed.cuda_graphs.GraphCache, see speed.levers.set_cuda_graphs
        c = config
        dim, emb_dim, groups = c.model_channels, c.time_embed_dim, c.norm_groups

        self.time_embed = nn.Sequential(ops.Linear(dim, emb_dim), nn.SiLU(), ops.Linear(emb_dim, emb_dim))
        if c.use_fps:
            self.fps_embedding = nn.Sequential(ops.Linear(dim, emb_dim), nn.SiLU(), ops.Linear(emb_dim, emb_dim))
        if c.use_image_embedding:
            self.context_embedding = nn.Sequential(
                ops.Linear(c.image_embedding_dim, emb_dim), nn.SiLU(),
                ops.Linear(emb_dim, c.context_dim * c.num_image_tokens))
        if c.use_image_latent:
            ch, mid = c.in_channels, c.in_channels * 4
            self.local_image_concat = nn.Sequential(
                ops.Conv2d(ch, mid, 3, padding=1), nn.SiLU(), ops.Conv2d(mid, mid, 3, padding=1), nn.SiLU(),
                ops.Conv2d(mid, ch, 3, padding=1))
            self.local_temporal_encoder = ImageTemporalEncoder(ch, ops=ops)
            c1, c2 = c.image_context_channels
            self.local_image_embedding = nn.Sequential(
                ops.Conv2d(ch, c1, 3, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d((32, 32)),
                ops.Conv2d(c1, c2, 3, stride=2, padding=1), nn.SiLU(),
                ops.Conv2d(c2, c.context_dim, 3, stride=2, padding=1))

        ctx = c.context_dim
        # encoder: input_blocks[0] = conv_in + initial temporal transformer
        self.input_blocks = nn.ModuleList([nn.ModuleList([
            ops.Conv2d(c.in_channels + c.concat_channels, dim, 3, padding=1),
            TemporalTransformer(dim, c.init_temporal_heads, c.head_dim, groups, ops)])])
        skip_channels = [dim]
        ch = dim
        for level, out_ch in enumerate(c.block_channels):
            for _ in range(c.num_res_blocks):
                self.input_blocks.append(self._stage(ch, out_ch, c.attention_levels[level]))
                ch = out_ch
                skip_channels.append(ch)
            if level != len(c.block_channels) - 1:
                self.input_blocks.append(Downsample(ch, c.vid2vid_pad, ops))
                skip_channels.append(ch)

        self.middle_block = nn.ModuleList([
            ResBlock(ch, ch, emb_dim, groups, ops), SpatialTransformer(ch, c.head_dim, ctx, groups, ops),
            TemporalTransformer(ch, ch // c.head_dim, c.head_dim, groups, ops), ResBlock(ch, ch, emb_dim, groups, ops)])

        self.output_blocks = nn.ModuleList()
        for level, out_ch in reversed(list(enumerate(c.block_channels))):
            for j in range(c.num_res_blocks + 1):
                stage = self._stage(ch + skip_channels.pop(), out_ch, c.attention_levels[level])
                ch = out_ch
                if level != 0 and j == c.num_res_blocks:
                    stage.append(Upsample(ch, c.vid2vid_pad, ops))
                self.output_blocks.append(stage)

        self.out = nn.Sequential(ops.GroupNorm(groups, ch), nn.SiLU(), ops.Conv2d(ch, c.out_channels, 3, padding=1))

    def _stage(self, cin: int, cout: int, with_attention: bool) -> nn.ModuleList:
        c, ops = self.config, self._ops
        layers = [ResBlock(cin, cout, c.time_embed_dim, c.norm_groups, ops)]
        if with_attention:
            layers += [SpatialTransformer(cout, c.head_dim, c.context_dim, c.norm_groups, ops),
                       TemporalTransformer(cout, cout // c.head_dim, c.head_dim, c.norm_groups, ops)]
        return nn.ModuleList(layers)

    @property
    def variant(self) -> str:
        """"i2vgen_xl", "ms_image2video" or "ms_vid2vid_xl"."""
        return self.config.variant

    @property
    def weight_dtype(self) -> torch.dtype:
        """Dtype the weights are stored in (read off the output convolution)."""
        return self.out[2].weight.dtype

    @property
    def weight_device(self) -> torch.device:
        """Device the weights are on now."""
        return self.out[2].weight.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype the activations run in (the weights' dtype unless they are stored narrower, e.g. fp8)."""
        return self.compute_dtype or self.weight_dtype

    def set_attention_backend(self, name: str, device: torch.device | str | None = None) -> str:
        """Choose the backend of every attention layer (`network.attention.BACKENDS`); returns the one in use.

        "auto" (= "sdpa": PyTorch's scaled-dot-product attention), "xformers" (CUDA, optional package), "chunked"
        (bounded score memory, slowest; a `Chunked` sets the bound), "bmm" (batched matmuls for the short temporal
        sequences, SDPA for the rest), "flex" (FlexAttention, compiled on CUDA) or "sage" (SageAttention, CUDA,
        optional package). `device` is where the model will run (default: where its weights are now), checked for
        the backends that need CUDA. The other speed levers are switched in `i2vgen_core.speed.levers`.
        """
        backend = resolve_backend(name, device if device is not None else self.weight_device)
        for module in self.modules():
            if isinstance(module, (Attention, ImageTemporalEncoder)):
                module.backend = backend
        return backend

    # ---------------------------------------------------------------- inputs
    def check_inputs(self, sample: torch.Tensor, text, image_embedding, image_latent, fps) -> None:
        """Raise a ValueError that says what is wrong when inputs do not fit this variant."""
        c = self.config
        name = self.variant
        if sample.ndim != 5 or sample.shape[1] != c.in_channels:
            raise ValueError(f"sample must be [batch, {c.in_channels}, frames, height/8, width/8], "
                             f"got {list(sample.shape)}")
        b, _, f, h, w = sample.shape
        if f < 1:
            raise ValueError("sample has zero frames")
        given = {"text": text, "image_embedding": image_embedding, "image_latent": image_latent, "fps": fps}
        used = {"text": c.use_text, "image_embedding": c.use_image_embedding,
                "image_latent": c.use_image_latent, "fps": c.use_fps}
        for key, value in given.items():
            if value is not None and not used[key]:
                raise ValueError(f"{name} does not take {key}; it is conditioned on "
                                 f"{', '.join(k for k, u in used.items() if u) or 'nothing'} only")
            if value is None and used[key]:
                raise ValueError(f"{name} needs {key} (conditioned on {', '.join(k for k, u in used.items() if u)})")
        if text is not None and (text.ndim != 3 or text.shape[0] != b or text.shape[2] != c.context_dim):
            raise ValueError(f"text must be [{b}, tokens, {c.context_dim}], got {list(text.shape)}")
        if image_embedding is not None and tuple(image_embedding.shape) != (b, c.image_embedding_dim):
            raise ValueError(f"image_embedding must be [{b}, {c.image_embedding_dim}], got {list(image_embedding.shape)}")
        if image_latent is not None and tuple(image_latent.shape) != (b, c.in_channels, h, w):
            raise ValueError(f"image_latent must be [{b}, {c.in_channels}, {h}, {w}] (the VAE latent of the "
                             f"conditioning image at the video's size), got {list(image_latent.shape)}")
        check_latent_size(c, h, w)

    def _image_branch(self, image_latent: torch.Tensor, frames: int, anchor: bool = True) -> torch.Tensor:
        b, ch, h, w = image_latent.shape
        # frame 0 is the image latent, frames 1..F-1 are constants j/(F-1): the ramp the model was trained with;
        # without the anchor (a later window of a long video) frame 0 is the ramp's 0 as well
        first = 0 if anchor else 1
        ramp = torch.arange(1 - first, frames, device=image_latent.device, dtype=image_latent.dtype)
        ramp = (ramp / max(frames - 1, 1)).view(1, frames - 1 + first, 1, 1, 1).expand(b, -1, ch, h, w)
        parts = [image_latent[:, None], ramp] if anchor else [ramp]
        video = torch.cat(parts, dim=1).reshape(b * frames, ch, h, w)
        feats = self.local_image_concat(video)
        tokens = feats.view(b, frames, ch, h, w).permute(0, 3, 4, 1, 2).reshape(b * h * w, frames, ch)
        tokens = self.local_temporal_encoder(tokens)
        return tokens.view(b, h, w, frames, ch).permute(0, 3, 4, 1, 2).reshape(b * frames, ch, h, w)

    # ---------------------------------------------------------------- forward
    def forward(self, sample: torch.Tensor, timestep, *, text: torch.Tensor | None = None,
                image_embedding: torch.Tensor | None = None, image_latent: torch.Tensor | None = None,
                fps=None, hooks: ForwardHooks | None = None, image_anchor: bool = True) -> torch.Tensor:
        """Predict v for a noisy video latent [B, 4, F, h, w] at `timestep` (0..999).

        `hooks` plugs patches, wrappers and an attention function into this pass (see `i2vgen_core.network.hooks`);
        FreeU set by `enable_freeu` joins them. `image_anchor=False` is for a window of a longer video that does not
        start at the conditioning image: its first frame then gets the frame-position ramp's 0 instead of the
        image latent (the image still conditions it through the context tokens). CUDA graphs
        (`speed.levers.set_cuda_graphs`) replay plain passes only (no hooks, no FreeU).
        """
        if fps is None and self.config.use_fps and self.config.fps_optional:
            fps = self.config.default_fps
        self.check_inputs(sample, text, image_embedding, image_latent, fps)
        if (self.cuda_graphs is not None and hooks is None and self.freeu is None and image_anchor
                and sample.is_cuda and not torch.compiler.is_compiling()
                and not torch.cuda.is_current_stream_capturing()):
            timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0])
            if fps is not None:
                fps = torch.as_tensor(fps, device=sample.device).reshape(-1).expand(sample.shape[0])
            return self.cuda_graphs(sample, timestep.contiguous(), text=text, image_embedding=image_embedding,
                                    image_latent=image_latent, fps=fps if fps is None else fps.contiguous())
        return self._predict(sample, timestep, text=text, image_embedding=image_embedding,
                             image_latent=image_latent, fps=fps, hooks=hooks, image_anchor=image_anchor)

    def _predict(self, sample: torch.Tensor, timestep, *, text: torch.Tensor | None = None,
                 image_embedding: torch.Tensor | None = None, image_latent: torch.Tensor | None = None,
                 fps=None, hooks: ForwardHooks | None = None, image_anchor: bool = True) -> torch.Tensor:
        """The forward pass itself, on inputs already checked (`forward` checks them; hosts that validated the
        conditioning once per run, like ComfyUI's ``extra_conds``, call this directly). CUDA graphs capture it."""
        if self.freeu is not None:
            hooks = copy.copy(hooks) if hooks is not None else ForwardHooks()
            hooks.output_block = [*hooks.output_block, self.freeu]
        if hooks is not None:
            hooks.reset()
        c = self.config
        b, _, frames, h, w = sample.shape
        dtype = self.dtype
        dev = sample.device

        t = torch.as_tensor(timestep, device=dev).reshape(-1).expand(b)
        emb = self.time_embed(timestep_embedding(t, c.model_channels).to(dtype))
        if c.use_fps:
            fps_t = torch.as_tensor(fps, device=dev).reshape(-1).expand(b)
            emb = emb + self.fps_embedding(timestep_embedding(fps_t, c.model_channels).to(dtype))

        context = []
        if c.use_text:
            context.append(text.to(dtype))
        if c.use_image_latent:
            lat = self.local_image_embedding(image_latent.to(dtype))
            context.append(lat.flatten(2).transpose(1, 2))
        if c.use_image_embedding:
            context.append(self.context_embedding(image_embedding.to(dtype)).view(b, c.num_image_tokens, -1))
        context = torch.cat(context, dim=1)  # [B, tokens, C]: shared by the frames of each video, never repeated
        if hooks is not None:
            emb = apply_all(hooks.embedding, emb, hooks)
        emb = emb.repeat_interleave(frames, dim=0)

        x = sample.to(dtype).transpose(1, 2).reshape(b * frames, c.in_channels, h, w)
        if c.use_image_latent:
            branch = self._image_branch(image_latent.to(dtype), frames, image_anchor)
            x = torch.cat([x, branch * self.image_branch_scale], dim=1)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        # 1. encoder, 2. middle, 3. decoder with skips, 4. output head; hooks (when given) see each block
        skips = []
        for i, block in enumerate(self.input_blocks):
            if hooks is not None:
                hooks.enter_block("input", i)
            x = self._run(block, x, emb, context, frames, None, hooks)
            if hooks is not None:
                x = apply_all(hooks.input_block, x, hooks)
            skips.append(x)
            if hooks is not None:
                x = apply_all(hooks.input_block_after_skip, x, hooks)
        if hooks is not None:
            hooks.enter_block("middle", 0)
            x = apply_all(hooks.middle_block_before, x, hooks)
        x = self._run(self.middle_block, x, emb, context, frames, None, hooks)
        if hooks is not None:
            x = apply_all(hooks.middle_block_after, x, hooks)
        for i, block in enumerate(self.output_blocks):
            skip = skips.pop()
            if hooks is not None:
                hooks.enter_block("output", i)
                for patch in hooks.output_block:
                    x, skip = patch(x, skip, hooks)
            x = torch.cat([x, skip], dim=1)
            del skip
            x = self._run(block, x, emb, context, frames, skips[-1].shape[-2:] if skips else None, hooks)
        x = self.out(x)
        return x.reshape(b, frames, c.out_channels, h, w).transpose(1, 2).to(sample.dtype)

    def enable_freeu(self, s1: float, s2: float, b1: float, b2: float) -> None:
        """Turn FreeU on with diffusers' semantics (`I2VGenXLUNet.enable_freeu`); `disable_freeu` turns it off."""
        self.freeu = FreeU(s1, s2, b1, b2, blocks_per_level=self.config.num_res_blocks + 1)

    def disable_freeu(self) -> None:
        """Turn FreeU off."""
        self.freeu = None

    def _run(self, block, x, emb, context, frames, up_size, hooks=None):
        layers = block if isinstance(block, nn.ModuleList) else [block]
        for layer in layers:
            if isinstance(layer, ResBlock):
                x = layer(x, emb, frames)
            elif isinstance(layer, TemporalTransformer):  # its sum in the trunk's layout
                x = layer(x, context, frames, hooks,
                          memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context, frames) if hooks is None else layer(x, context, frames, hooks)
            elif isinstance(layer, Upsample):
                x = layer(x, up_size)
            else:
                x = layer(x)
        return x


def build_unet(config: UNetConfig, *, device: torch.device | str | None = None,
               dtype: torch.dtype | None = None, ops=None, network: type[I2VGenUNet] = I2VGenUNet) -> I2VGenUNet:
    """A randomly initialised network (use device='meta' for shapes only); `network` may be a host's subclass."""
    with torch.device(device or "cpu"):
        unet = network(config, ops=ops)
    return unet.to(dtype) if dtype is not None else unet
