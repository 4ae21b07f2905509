"""Reading checkpoint files defensively: content sniffing, safetensors header checks, pickle structure checks.

Every failure of reading or parsing ends in a `CheckpointError` that names the file, says what was expected and
what to do. Nothing a file claims (header sizes, tensor shapes, storage sizes) is allocated before it has been
checked against the file's real size, and pickles are only ever executed by `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import io
import json
import math
import mmap
import os
import pickle
import pickletools
import stat
import struct
import zipfile
from pathlib import Path
from typing import Mapping

import torch

from ..dtypes import SAFETENSORS_BYTES as SAFETENSORS_DTYPES, SAFETENSORS_NAMES

REDOWNLOAD = "the file is truncated or damaged: download it again (compare its size with the source)"
PICK_UNET = ("pick the UNet checkpoint of I2VGen-XL, MS-Image2Video or MS-Vid2Vid-XL (a .safetensors, .pth or .bin "
             "file, or a diffusers 'unet' folder)")
CONVERT = ("convert a trusted copy with `python -m i2vgen_core convert IN OUT.safetensors` on a machine where you trust "
           "the file, or use the safetensors release")

MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a legacy (pre-zip) torch.save file
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                     "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin")


# ------------------------------------------------------------------------------------------------ entry point
class CheckpointError(ValueError):
    """A file that is not a loadable I2VGen-XL-family UNet; the message says what it looks like."""


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict | None]:
    """Tensors of a checkpoint file or diffusers folder, plus its config.json (or embedded config) when present."""
    return read_checkpoint(path)


def unwrap(obj, name: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the tensor dict inside {'state_dict': ...}-style wrappers."""
    for _ in range(3):
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in ("state_dict", "model", "module", "ema", "params") if k in obj
                          and isinstance(obj[k], Mapping)), None)
            if inner is None:
                break
            obj = inner
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)} \
        if isinstance(obj, Mapping) else {}
    if not tensors:
        raise CheckpointError(f"{name} holds no tensors (found {type(obj).__name__}); expected a UNet state dict — "
                              f"pick the UNet checkpoint file")
    return tensors


def read_checkpoint(path: str | os.PathLike, label: str | None = None) -> tuple[dict[str, torch.Tensor], dict | None]:
    """Tensors of a checkpoint file or diffusers folder (format sniffed from the content, not the extension), plus
    its config.json or embedded config when present."""
    path = Path(path)
    label = label or path.name or str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise CheckpointError(f"{label} is a link to {os.readlink(path)}, which does not exist; fix the link or "
                                  f"put the checkpoint file itself there") from None
        raise CheckpointError(f"{label}: checkpoint not found at {path}; check the path or download the file") from None
    except OSError as err:
        raise CheckpointError(f"{label} cannot be opened ({err.strerror or err}); check that the path is a "
                              f"readable checkpoint file") from None
    if stat.S_ISDIR(info.st_mode):
        return _read_folder(path, label)
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"{label} is not a regular file (a device, pipe or socket); point the loader at a "
                              f"checkpoint file")
    size = info.st_size
    if size == 0:
        raise CheckpointError(f"{label} is empty (0 bytes); the download probably failed — fetch it again")
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as err:
        raise CheckpointError(f"{label} cannot be read ({err.strerror or err}); check its permissions") from None
    kind = sniff(head, size)
    if kind == "safetensors":
        return _read_safetensors(path, label, size)
    if kind == "zip":
        return unwrap(_read_torch_zip(path, label, size), label), None
    if kind == "pickle":
        return unwrap(_read_torch_legacy(path, label, size), label), None
    raise CheckpointError(f"{label} is {kind}, not a checkpoint (safetensors, PyTorch zip or PyTorch pickle); "
                          f"{PICK_UNET}")


def sniff(head: bytes, size: int) -> str:
    """'safetensors', 'zip', 'pickle', or a description of what the first bytes of a file look like."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer (the weights were not downloaded: run `git lfs pull` or download the file itself)"
    text = head.lstrip()[:15].lower()
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<")):
        return "a web page (an error or login page was saved instead of the file: download the file itself)"
    if text.startswith((b"{", b"[")):
        return "a JSON text file"
    if head[:4] == b"GGUF":
        return "a GGUF file"
    if size < 9:
        return f"only {size} bytes long"
    return f"of unknown content (starts with {head[:8].hex(' ')})"


# ------------------------------------------------------------------------------------------------ folders
def _read_folder(path: Path, label: str) -> tuple[dict[str, torch.Tensor], dict | None]:
    weights = next((path / n for n in DIFFUSERS_WEIGHTS if (path / n).is_file()), None)
    if weights is None and (path / "unet").is_dir():  # the whole diffusers repository: use its unet
        return _read_folder(path / "unet", f"{label}/unet")
    if weights is None:
        raise CheckpointError(f"{label} is a folder without diffusion_pytorch_model(.fp16).safetensors or .bin; "
                              f"point the loader at the diffusers 'unet' folder or at a single checkpoint file")
    config = None
    if (path / "config.json").exists():
        try:
            config = json.loads((path / "config.json").read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
            raise CheckpointError(f"{label}/config.json is not readable JSON ({err}); download the unet's "
                                  f"config.json again or delete it (the configuration is read off the tensors)") from None
        if not isinstance(config, dict):
            raise CheckpointError(f"{label}/config.json holds a {type(config).__name__}, expected a JSON object; "
                                  f"download the unet's config.json again or delete it")
    sd, _ = read_checkpoint(weights, f"{label}/{weights.name}")
    return sd, config


# ------------------------------------------------------------------------------------------------ safetensors
def safetensors_header(path: Path, label: str, size: int) -> dict:
    """The parsed JSON header of a safetensors file, after checking every entry against the file's real size."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > size - 8 or n > MAX_HEADER_BYTES:
            raise CheckpointError(f"{label}: the safetensors header claims {n:,} bytes but the file has "
                                  f"{max(size - 8, 0):,} bytes after its length field; {REDOWNLOAD}")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CheckpointError(f"{label}: the safetensors header is not valid JSON ({err}); {REDOWNLOAD}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{label}: the safetensors header is a {type(header).__name__}, expected a JSON "
                              f"object; {REDOWNLOAD}")
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise CheckpointError(f"{label}: the safetensors __metadata__ is not a string-to-string map; {REDOWNLOAD}")
    data_size = size - 8 - n
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        spans.append(_check_entry(name, entry, data_size, label))
    spans.sort()
    end = 0
    for begin, stop, name in spans:
        if begin != end:
            what = "overlaps the previous tensor" if begin < end else f"leaves a gap of {begin - end} bytes"
            raise CheckpointError(f"{label}: tensor {name!r} {what} in the data section; {REDOWNLOAD}")
        end = stop
    if end != data_size:
        raise CheckpointError(f"{label}: the tensors cover {end:,} of the {data_size:,} data bytes; {REDOWNLOAD}")
    return header


def header_summary(header: Mapping[str, dict]) -> tuple[int, str | None]:
    """(parameter count, the pack's name of the dtype holding most parameters) of a header that
    `safetensors_header` has checked; the name is None when that dtype is not a floating-point one. Tensors are
    taken in name order (as the safetensors library lists them), so a tie goes to the first one's dtype."""
    counts: dict[str, int] = {}
    for name in sorted(k for k in header if k != "__metadata__"):
        entry = header[name]
        counts[entry["dtype"]] = counts.get(entry["dtype"], 0) + math.prod(entry["shape"])
    dominant = max(counts, key=counts.get) if counts else None
    return sum(counts.values()), SAFETENSORS_NAMES.get(dominant)


def peek_safetensors(path: str | os.PathLike) -> tuple[int, str | None]:
    """`header_summary` of a safetensors file, from its header alone (no tensor is read); a CheckpointError naming
    the file when the header is damaged or the file cannot be read."""
    path = Path(path)
    label = path.name or str(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a folder, pipe or device: opening one may block or fail later
            raise CheckpointError(f"{label} is not a regular file; point the loader at a checkpoint file")
        return header_summary(safetensors_header(path, label, info.st_size))
    except OSError as err:
        raise CheckpointError(f"{label} cannot be read ({err.strerror or err}); check that the path is a readable "
                              f"checkpoint file") from None


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key " + repr(next(k for k in keys if keys.count(k) > 1)))
    return dict(pairs)


def _check_entry(name: str, entry, data_size: int, label: str) -> tuple[int, int, str]:
    def bad(what: str):
        return CheckpointError(f"{label}: tensor {name!r} has {what} in the safetensors header; {REDOWNLOAD}")

    if not isinstance(entry, dict) or {"dtype", "shape", "data_offsets"} - set(entry):
        raise bad("an entry without dtype/shape/data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
        raise CheckpointError(f"{label}: tensor {name!r} has dtype {dtype!r}, which this loader cannot read "
                              f"(expected one of {', '.join(SAFETENSORS_DTYPES)}); {PICK_UNET}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise bad(f"an invalid shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise bad(f"invalid data_offsets {offsets!r}")
    begin, stop = offsets
    if stop > data_size:
        raise bad(f"data_offsets {offsets} past the end of the file's {data_size:,} data bytes")
    nbytes = math.prod(shape) * SAFETENSORS_DTYPES[dtype]
    if nbytes != stop - begin:
        raise bad(f"shape {shape} of {dtype} ({nbytes:,} bytes) but data_offsets spanning {stop - begin:,} bytes")
    return begin, stop, name


def _read_safetensors(path: Path, label: str, size: int) -> tuple[dict[str, torch.Tensor], dict | None]:
    from safetensors.torch import load_file

    header = safetensors_header(path, label, size)
    try:
        sd = load_file(str(path))
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever the parser of an untrusted file raises
        raise CheckpointError(f"{label} is not a readable safetensors file ({err}); {REDOWNLOAD}") from None
    meta = header.get("__metadata__") or {}
    config = None
    if "i2vgen_config" in meta:
        try:
            config = json.loads(meta["i2vgen_config"])
        except (ValueError, RecursionError) as err:
            raise CheckpointError(f"{label}: the embedded i2vgen_config is not valid JSON ({err}); convert the "
                                  f"original checkpoint again") from None
        if not isinstance(config, dict):
            raise CheckpointError(f"{label}: the embedded i2vgen_config is not a JSON object; convert the original "
                                  f"checkpoint again")
    return unwrap(sd, label), config


# ------------------------------------------------------------------------------------------------ pickles
class _Stub:
    """Stand-in for every global a pickle names while its structure is read; never runs anything."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def extend(self, values):
        pass

    def add(self, value):
        pass


class _StructureReader(pickle._Unpickler):
    """Unpickles with stubs in place of every global and records the storages the persistent ids describe.

    The pure-Python unpickler on purpose: its memo is a dict, while the C one grows an array to whatever index a
    (damaged) BINPUT names, which can mean minutes of work and gigabytes of memory."""

    def __init__(self, file):
        super().__init__(file)
        self.storages: dict[str, tuple[str, int]] = {}
        self._classes: dict[tuple[str, str], type] = {}

    def find_class(self, module, name):
        key = (str(module), str(name))
        if key not in self._classes:
            self._classes[key] = type("_Global", (_Stub,), {"global_name": key})
        return self._classes[key]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:80]}")
        kind, key, numel = pid[1], str(pid[2]), pid[4]
        name = getattr(kind, "global_name", ("", ""))[1]
        if type(numel) is not int or numel < 0:
            raise pickle.UnpicklingError(f"storage {key} with an invalid size {numel!r}")
        self.storages[key] = (name, numel)
        return _Stub()


def _itemsize(storage_type: str) -> int:
    """Bytes per element of a pickled storage type such as 'FloatStorage' (ValueError if unknown)."""
    if storage_type == "UntypedStorage":  # what torch.save writes for dtypes without a typed storage (fp8, ...)
        return 1
    try:
        dtype = torch.storage._get_dtype_from_pickle_storage_type(storage_type)
    except Exception:  # noqa: BLE001 - unknown name (or the private helper moved): refuse rather than guess
        raise ValueError(f"unknown storage type {storage_type!r}") from None
    return torch.empty(0, dtype=dtype).element_size()


def _parse(file, label: str) -> tuple[object, dict[str, tuple[str, int]]]:
    """One pickle from `file`, globals replaced by stubs (nothing runs), and the storages (key -> (type, numel))
    its persistent ids describe. Every length the pickle claims is checked against the data first."""
    start = file.tell()
    try:
        for _ in pickletools.genops(file):  # pure parse: a claimed length past the end fails here, unallocated
            pass
        file.seek(start)
        reader = _StructureReader(file)
        obj = reader.load()
    except Exception as err:  # noqa: BLE001 - any way a damaged pickle fails to parse
        raise CheckpointError(f"{label}: its pickle is damaged ({type(err).__name__}: {str(err)[:120]}); "
                              f"{REDOWNLOAD}") from None
    return obj, reader.storages


def _read_torch_zip(path: Path, label: str, size: int):
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            roots = {n.split("/", 1)[0] for n in names}
            if len(names) != len(set(names)):
                raise CheckpointError(f"{label}: its zip archive lists a member twice; {REDOWNLOAD}")
            if any("\\" in n or n.startswith("/") or ".." in n.split("/") for n in names) or len(roots) != 1:
                raise CheckpointError(f"{label}: its zip archive has members outside one top folder (e.g. "
                                      f"'../'); it was not written by torch.save — {PICK_UNET}")
            root = roots.pop()
            sizes = {i.filename: i.file_size for i in infos}
            if f"{root}/constants.pkl" in sizes:
                raise CheckpointError(f"{label} is a TorchScript archive, not a weights checkpoint; save the "
                                      f"model's state_dict instead, or {PICK_UNET}")
            if f"{root}/data.pkl" not in sizes:
                raise CheckpointError(f"{label} is a zip archive without {root}/data.pkl, so not a PyTorch "
                                      f"checkpoint (or one with a member lost); {REDOWNLOAD}")
            for i in infos:
                if i.compress_type != zipfile.ZIP_STORED or i.file_size > size:
                    raise CheckpointError(f"{label}: zip member {i.filename} is compressed or larger than the file; "
                                          f"torch.save writes neither — {REDOWNLOAD}")
            _, storages = _parse(io.BytesIO(zf.read(f"{root}/data.pkl")), label)
        for key, (kind, numel) in storages.items():
            record = f"{root}/data/{key}"
            try:
                need = numel * _itemsize(kind)
            except ValueError as err:
                raise CheckpointError(f"{label}: {err}; {PICK_UNET}") from None
            if record not in sizes:
                raise CheckpointError(f"{label}: storage {record} is missing from the archive; {REDOWNLOAD}")
            if sizes[record] < need:
                raise CheckpointError(f"{label}: storage {record} holds {sizes[record]:,} bytes but its tensors "
                                      f"need {need:,}; {REDOWNLOAD}")
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, KeyError,
            NotImplementedError, struct.error) as err:
        raise CheckpointError(f"{label} is not a readable PyTorch zip checkpoint ({err}); {REDOWNLOAD}") from None
    return _torch_load(path, label, mmap=True)


def _read_torch_legacy(path: Path, label: str, size: int):
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        try:
            magic = _parse(m, label)[0]
        except CheckpointError:
            magic = None
        if magic != TORCH_MAGIC:  # a plain pickle: torch.load refuses it with its own reason (code or format)
            return _torch_load(path, label, mmap=False)
        for _ in range(2):  # protocol version, system info
            _parse(m, label)
        _, storages = _parse(m, label)
        keys = _parse(m, label)[0]
        if (not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)
                or set(keys) != set(storages)):
            raise CheckpointError(f"{label}: its storage list does not match its tensors; {REDOWNLOAD}")
        pos = m.tell()
        for key in keys:
            kind, numel = storages[key]
            try:
                item = _itemsize(kind)
            except ValueError as err:
                raise CheckpointError(f"{label}: {err}; {PICK_UNET}") from None
            count = int.from_bytes(m[pos:pos + 8], "little")
            pos += 8 + numel * item
            if count != numel or pos > size:
                raise CheckpointError(f"{label}: storage {key} is cut short or has the wrong size; {REDOWNLOAD}")
    return _torch_load(path, label, mmap=False)


def _torch_load(path: Path, label: str, mmap: bool):
    try:
        if path.suffix == ".safetensors":  # torch.load would hand such a path to safetensors: give it the bytes
            with open(path, "rb") as f:
                return torch.load(f, map_location="cpu", weights_only=True)
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{label} is a pickle that needs to run code to load, which is refused for safety (torch.load "
            f"weights_only=True: {str(err).splitlines()[0] if str(err) else 'refused'}). {CONVERT}") from None
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever torch's reader raises on a damaged file
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{label} could not be read as a PyTorch checkpoint ({first}); the file is "
                              f"probably truncated or not a checkpoint — download it again") from None


# ------------------------------------------------------------------------------------------------ tensors
#: diffusers config.json fields that must agree with what the tensors say
_CONFIG_JSON_FIELDS = {"in_channels": lambda c: c.in_channels, "out_channels": lambda c: c.out_channels,
                       "block_out_channels": lambda c: list(c.block_channels),
                       "layers_per_block": lambda c: c.num_res_blocks,
                       "cross_attention_dim": lambda c: c.context_dim}


def check_config_json(hints: dict | None, config, label: str) -> None:
    """Refuse a diffusers config.json that contradicts the tensors (a folder mixing files of two models)."""
    if not hints or "variant" in hints:  # none, or our own embedded config (checked by the shapes)
        return
    diffs = [f"{k} {hints[k]!r} (the weights: {get(config)!r})" for k, get in _CONFIG_JSON_FIELDS.items()
             if k in hints and hints[k] != get(config)]
    if diffs:
        raise CheckpointError(f"{label}: config.json disagrees with the weights: {'; '.join(diffs)}. The folder "
                              f"mixes files of different models: download the unet's config.json again, or delete "
                              f"it (the configuration is read off the tensors)")


def check_dtypes(sd: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], label: str) -> None:
    """Refuse tensors whose kind (floating or not) differs from the network's."""
    wrong = [k for k, v in sd.items() if k in expected and v.is_floating_point() != expected[k].is_floating_point()]
    if wrong:
        k = wrong[0]
        raise CheckpointError(f"{label}: {len(wrong)} tensors have a dtype the network cannot use, e.g. {k} is "
                              f"{str(sd[k].dtype).replace('torch.', '')} where {str(expected[k].dtype)[6:]}-like "
                              f"floating-point weights are expected; the file is not a plain-precision UNet "
                              f"checkpoint (quantized or damaged): {PICK_UNET}, or download it again")


def check_finite(sd: Mapping[str, torch.Tensor], label: str) -> None:
    """Refuse NaN or infinite weights (named as in the file), reported at load instead of as a black video."""
    bad = nonfinite(sd)
    if bad:
        raise CheckpointError(f"{label}: {len(bad)} tensors hold NaN or infinite values (e.g. "
                              f"{', '.join(bad[:3])}), which would give black or noise videos; the file is "
                              f"corrupt: download it again (or re-save it from a healthy copy)")


def nonfinite(sd: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of floating-point tensors holding NaN or +-inf (one min/max pass per tensor, no temporaries; meta
    tensors have no values to check)."""
    return [k for k, v in sd.items() if v.is_floating_point() and v.numel() and not v.is_meta and not _finite(v)]


def _finite(v: torch.Tensor) -> bool:
    if v.element_size() == 1:  # fp8 has no aminmax kernel; an fp32 sum of fp8 magnitudes cannot overflow
        return bool(torch.isfinite(torch.sum(v, dtype=torch.float32)))
    lo, hi = torch.aminmax(v)  # NaN propagates to both, +-inf shows in one
    return bool(torch.isfinite(lo) & torch.isfinite(hi))
