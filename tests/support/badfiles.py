"""Builders of valid and broken checkpoint files, and the property every load of them must satisfy."""

from __future__ import annotations

import collections
import contextlib
import io
import json
import pickle
import signal
import struct
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save

from i2vgen_core import CheckpointError, export_state_dict, load_unet
from i2vgen_core.weights.layouts import diffusers_config

#: a two-level tiny network (1.7M parameters): small files, fast loads
SMALL = dict(block_channels=(32, 64), num_res_blocks=1, attention_levels=(True, False), context_dim=32,
             image_embedding_dim=32)
#: what a CheckpointError must tell the user to do (one of these words)
ACTIONS = ("download", "convert", "pick", "point", "move", "fix", "check", "delete", "re-save", "put the", "fetch")
TORCH_MAGIC = 0x1950A86A20F9469CFC6C


class Hang(BaseException):
    """A load ran past its deadline (BaseException so no `except Exception` in the loader can swallow it)."""


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail with Hang if the block runs longer than `seconds` (SIGALRM, main thread)."""
    def fire(*_):
        raise Hang(f"no answer after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def attempt(path, label: str | None = None, seconds: int = 60):
    """('error', message) for a CheckpointError that names the file and says what to do, or ('loaded', unet) for
    a load whose weights are all finite floats; anything else (another exception, a hang) propagates."""
    label = label or Path(path).name
    with deadline(seconds):
        try:
            unet = load_unet(path)
        except CheckpointError as err:
            msg = str(err)
            assert label in msg, f"the message does not name {label}: {msg}"
            assert any(a in msg.lower() for a in ACTIONS), f"the message says nothing to do: {msg}"
            return "error", msg
    for name, p in unet.state_dict().items():
        assert p.is_floating_point() and bool(torch.isfinite(p).all()), name
    return "loaded", unet


# ------------------------------------------------------------------------------------------------ safetensors
def st_bytes(sd: dict[str, torch.Tensor], metadata: dict | None = None) -> bytes:
    """A safetensors file's bytes."""
    return save({k: v.contiguous() for k, v in sd.items()}, metadata=metadata)


def st_split(data: bytes) -> tuple[dict, bytes]:
    """(header dict, data section) of safetensors bytes."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def st_join(header: dict | bytes, body: bytes, length: int | None = None) -> bytes:
    """safetensors bytes from a header (dict or raw bytes), a data section and optionally a false length field."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return (len(raw) if length is None else length).to_bytes(8, "little") + raw + body


# ------------------------------------------------------------------------------------------------ torch pickles
class FakeStorage:
    """Placeholder the pickler below turns into a torch persistent id."""

    def __init__(self, kind: str, key: str, numel: int):
        self.kind, self.key, self.numel = kind, key, numel


class FakeTensor:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...), like a real tensor."""

    def __init__(self, storage: FakeStorage, size: tuple, stride: tuple, offset: int = 0):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args


class _Pickler(pickle.Pickler):
    def __init__(self, file, legacy: bool):
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if not isinstance(obj, FakeStorage):
            return None
        kind = getattr(torch, obj.kind)
        pid = ("storage", kind, obj.key, "cpu", obj.numel)
        return pid + (None,) if self.legacy else pid


def fake_pickle(obj, legacy: bool = False) -> bytes:
    """A torch-style pickle of `obj` (FakeTensor/FakeStorage inside become rebuild calls and persistent ids)."""
    buf = io.BytesIO()
    _Pickler(buf, legacy).dump(obj)
    return buf.getvalue()


def torch_zip(data_pkl: bytes, records: dict[str, bytes], root: str = "archive",
              extra: dict[str, bytes] | None = None, compress: int = zipfile.ZIP_STORED) -> bytes:
    """A zip-format torch checkpoint from a data.pkl and its storage records."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as z:
        z.writestr(f"{root}/data.pkl", data_pkl)
        z.writestr(f"{root}/byteorder", b"little")
        for key, data in records.items():
            z.writestr(f"{root}/data/{key}", data)
        z.writestr(f"{root}/version", b"3\n")
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def torch_legacy(obj_pickle: bytes, storages: list[tuple[str, int, bytes]]) -> bytes:
    """A legacy (pre-zip) torch.save file: magic, protocol, system info, object, storage keys, storage data
    (each as (key, element count written in front, bytes))."""
    info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    out = [pickle.dumps(TORCH_MAGIC, protocol=2), pickle.dumps(1001, protocol=2), pickle.dumps(info, protocol=2),
           obj_pickle, pickle.dumps([k for k, _, _ in storages], protocol=2)]
    for _, count, data in storages:
        out.append(struct.pack("<q", count) + data)
    return b"".join(out)


def zip_rewrite(data: bytes, fn) -> bytes:
    """Copy a zip, passing each (name, bytes) through fn, which returns a list of (name, bytes) to write."""
    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            for name, content in fn(info.filename, src.read(info.filename)):
                dst.writestr(name, content)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------ valid files
def good_files(unet, folder: Path) -> dict[str, Path]:
    """The small network saved in every accepted format: safetensors (diffusers keys), zip .pth (VGen keys),
    legacy .pth (ModelScope keys) and a diffusers folder."""
    folder.mkdir(parents=True, exist_ok=True)
    diffusers = export_state_dict(unet, "diffusers")
    paths = {"safetensors": folder / "unet.safetensors", "zip": folder / "unet_zip.pth",
             "legacy": folder / "unet_legacy.pth", "folder": folder / "unet"}
    paths["safetensors"].write_bytes(st_bytes(diffusers))
    torch.save({"state_dict": export_state_dict(unet, "vgen"), "step": 7}, paths["zip"])
    torch.save({"state_dict": export_state_dict(unet, "modelscope")}, paths["legacy"],
               _use_new_zipfile_serialization=False)
    paths["folder"].mkdir(exist_ok=True)
    (paths["folder"] / "config.json").write_text(json.dumps(diffusers_config(unet.config)))
    (paths["folder"] / "diffusion_pytorch_model.safetensors").write_bytes(st_bytes(diffusers))
    return paths


def same_weights(a, b) -> bool:
    """Whether two networks hold identical weights."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].float(), sb[k].float()) for k in sa)
