"""The safe checkpoint reader (i2vgen_core/weights/read.py) on bad files: a corpus of broken checkpoints in every
accepted format (the fuzzing is test_read_fuzz.py, beside this file).

Every case ends in a `CheckpointError` that names the file and says what to do, or loads correctly: no other
exception, no hang, no large allocation (headers and pickles claiming a terabyte are checked in a subprocess
whose peak memory is measured).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from i2vgen_core import CheckpointError, dtypes, export_state_dict, load_unet
from i2vgen_core.weights.read import nonfinite, peek_safetensors

from badfiles import (SMALL, FakeStorage, FakeTensor, attempt, deadline, fake_pickle, good_files, same_weights,
                      st_bytes, st_join, st_split, torch_legacy, torch_zip, zip_rewrite)
from helpers import random_unet

TB = 2 ** 40


@pytest.fixture(scope="module")
def unet():
    return random_unet(**SMALL)


@pytest.fixture(scope="module")
def good(unet, tmp_path_factory):
    return good_files(unet, tmp_path_factory.mktemp("good"))


# ------------------------------------------------------------------------------------------------ case builders
# Each builder gets (good files, the network) and returns the bytes of one broken file; CASES maps an id to
# (builder, file name, expected outcome, words the error must contain).
def _st(good):
    return good["safetensors"].read_bytes()


def _st_header_edit(fn):
    def build(good, unet):
        header, body = st_split(_st(good))
        fn(header)
        return st_join(header, body)
    return build


def _first(header):
    return next(k for k in header if k != "__metadata__")


def _st_tensor_edit(fn, sd_fn=None):
    """Rebuild the safetensors file with one tensor changed."""
    def build(good, unet):
        sd = export_state_dict(unet, "diffusers")
        key = "conv_in.weight"
        sd[key] = fn(sd[key])
        if sd_fn:
            sd = sd_fn(sd)
        return st_bytes(sd)
    return build


def _truncate(kind, where):
    def build(good, unet):
        data = good[kind].read_bytes()
        n = int.from_bytes(data[:8], "little") if kind == "safetensors" else 0
        cut = {"len1": 1, "len7": 7, "len8": 8, "hdr1": 9, "hdr_mid": 8 + n // 2, "hdr_end-1": 8 + n - 1,
               "hdr_end": 8 + n, "data1": 8 + n + 1, "data_mid": (8 + n + len(data)) // 2, "last-1": len(data) - 1,
               "half": len(data) // 2, "quarter": len(data) // 4, "tenth": len(data) // 10, "100": 100,
               "3quarters": 3 * len(data) // 4}[where]
        return data[:cut]
    return build


def _poke(kind, offset_fn, value: bytes):
    def build(good, unet):
        data = bytearray(good[kind].read_bytes())
        at = offset_fn(data)
        data[at:at + len(value)] = value
        return bytes(data)
    return build


def _json_syntax(good, unet):
    header, body = st_split(_st(good))
    raw = json.dumps(header).encode()
    return st_join(raw.replace(b'"', b"'", 3), body)


def _meta_not_str(header):
    header["__metadata__"] = {"format": 3}


def _dtype(name):
    return _st_header_edit(lambda h: h[_first(h)].update(dtype=name))


def _overlap(header):
    a, b = [k for k in header if k != "__metadata__"][:2]
    header[b]["data_offsets"] = list(header[a]["data_offsets"])
    header[b]["shape"], header[b]["dtype"] = header[a]["shape"], header[a]["dtype"]


def _offsets(value):
    return _st_header_edit(lambda h: h[_first(h)].update(data_offsets=value))


def _shape(value):
    return _st_header_edit(lambda h: h[_first(h)].update(shape=value))


def _duplicate_key(good, unet):
    header, body = st_split(_st(good))
    raw = json.dumps(header)
    key = _first(header)
    raw = raw[:-1] + f', "{key}": ' + json.dumps(header[key]) + "}"
    return st_join(raw.encode(), body)


def _embedded_config(text):
    def build(good, unet):
        return st_bytes(export_state_dict(unet, "ours"), metadata={"i2vgen_config": text})
    return build


def _nan(value, dtype=torch.float32, where=0):
    def edit(t):
        t = t.clone().to(dtype)
        t.view(-1)[where] = value
        return t
    return _st_tensor_edit(edit, lambda sd: {k: v.to(dtype) for k, v in sd.items()})


def _int_weights(dtype):
    return _st_tensor_edit(lambda t: t.to(dtype))


# ----- pickles that try to run code, by every opcode route (os.mkdir of a marker folder if anything ran)
MARKER = "/tmp/i2vgen_pwned_marker"


def _u(text: str) -> bytes:
    raw = text.encode()
    return pickle.SHORT_BINUNICODE + bytes([len(raw)]) + raw


ARGS = pickle.MARK + _u(MARKER) + pickle.TUPLE
P2, P4 = pickle.PROTO + b"\x02", pickle.PROTO + b"\x04"
ROUTES = {
    "GLOBAL-REDUCE": P2 + pickle.GLOBAL + b"os\nmkdir\n" + ARGS + pickle.REDUCE + pickle.STOP,
    "STACK_GLOBAL-REDUCE": P4 + _u("os") + _u("mkdir") + pickle.STACK_GLOBAL + ARGS + pickle.REDUCE + pickle.STOP,
    "eval": P2 + pickle.GLOBAL + b"builtins\neval\n" + pickle.MARK + _u(f"__import__('os').mkdir('{MARKER}')")
    + pickle.TUPLE + pickle.REDUCE + pickle.STOP,
    "INST": P2 + pickle.MARK + _u(MARKER) + pickle.INST + b"os\nmkdir\n" + pickle.STOP,
    "OBJ": P2 + pickle.MARK + pickle.GLOBAL + b"os\nmkdir\n" + _u(MARKER) + pickle.OBJ + pickle.STOP,
    "NEWOBJ": P2 + pickle.GLOBAL + b"pathlib\nPosixPath\n" + ARGS + pickle.NEWOBJ + pickle.STOP,
    "NEWOBJ_EX": P4 + _u("pathlib") + _u("PosixPath") + pickle.STACK_GLOBAL + ARGS + pickle.EMPTY_DICT
    + pickle.NEWOBJ_EX + pickle.STOP,
    "BUILD-state": P2 + pickle.GLOBAL + b"collections\nOrderedDict\n" + pickle.EMPTY_TUPLE + pickle.REDUCE
    + pickle.GLOBAL + b"os\nmkdir\n" + ARGS + pickle.REDUCE + pickle.BUILD + pickle.STOP,
    "BUILD-setstate": P2 + pickle.GLOBAL + b"pathlib\nPosixPath\n" + ARGS + pickle.REDUCE + pickle.EMPTY_DICT
    + pickle.BUILD + pickle.STOP,
    "PERSID": P2 + pickle.PERSID + b"evil\n" + pickle.STOP,
    "BINPERSID-global": P2 + pickle.MARK + _u("storage") + pickle.GLOBAL + b"os\nmkdir\n" + _u("0") + _u("cpu")
    + pickle.BININT1 + b"\x04" + pickle.TUPLE + pickle.BINPERSID + pickle.STOP,
    "BINPERSID-other": P2 + _u("module") + pickle.BINPERSID + pickle.STOP,
    "EXT1": P2 + pickle.EXT1 + b"\x01" + pickle.STOP,
    "protocol0-text": b"cos\nmkdir\n(V" + MARKER.encode() + b"\ntR.",
    "torch-global-misuse": P2 + pickle.GLOBAL + b"torch._utils\n_rebuild_tensor_v2\n" + ARGS + pickle.REDUCE
    + pickle.STOP,
    "torch-save-reduce": None,  # filled below: torch.save of an object whose __reduce__ calls os.mkdir
}


class _Evil:
    def __reduce__(self):
        return os.mkdir, (MARKER,)


def _evil_save(legacy: bool) -> bytes:
    import io
    buf = io.BytesIO()
    torch.save({"state_dict": {"x": torch.zeros(1)}, "hook": _Evil()}, buf,
               _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def _route(name, container):
    def build(good, unet):
        if name == "torch-save-reduce":
            return _evil_save(container == "legacy") if container != "raw" else pickle.dumps(_Evil(), protocol=2)
        payload = ROUTES[name]
        if container == "raw":
            return payload
        if container == "zip":
            return zip_rewrite(good["zip"].read_bytes(),
                               lambda n, d: [(n, payload if n.endswith("/data.pkl") else d)])
        return torch_legacy(payload, [])
    return build


# ----- torch storages and zip members
def _fake_zip(numel_claim=4, size=(4,), stride=(1,), record=16, kind="FloatStorage"):
    def build(good, unet):
        st = FakeStorage(kind, "0", numel_claim)
        return torch_zip(fake_pickle({"w": FakeTensor(st, size, stride)}), {"0": b"\0" * record})
    return build


def _fake_legacy(numel_claim=4, count=4, record=16, size=(4,)):
    def build(good, unet):
        st = FakeStorage("FloatStorage", "0", numel_claim)
        return torch_legacy(fake_pickle({"w": FakeTensor(st, size, (1,))}, legacy=True), [("0", count, b"\0" * record)])
    return build


def _members(fn):
    return lambda good, unet: zip_rewrite(good["zip"].read_bytes(), fn)


def _storage_named(n, key="data/0"):
    return n.split("/", 1)[1] == key


def _deflated(good, unet):
    import io
    src = zipfile.ZipFile(good["zip"])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    return buf.getvalue()


def _central_size(good, unet):
    """The central directory claims data.pkl is 4 GB uncompressed."""
    data = bytearray(good["zip"].read_bytes())
    at = data.index(b"PK\x01\x02")
    while not data[at + 46:at + 46 + int.from_bytes(data[at + 28:at + 30], "little")].endswith(b"data.pkl"):
        at = data.index(b"PK\x01\x02", at + 4)
    data[at + 24:at + 28] = (0xFFFFFFF0).to_bytes(4, "little")
    return bytes(data)


def _torchscript(good, unet):
    import io
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), buf)
    return buf.getvalue()


def _legacy_count(good, unet):
    """The element count in front of the first storage's bytes is wrong."""
    data = good["legacy"].read_bytes()
    # the storage section starts after the last pickle (its STOP): find it by parsing the five pickles
    import io
    import pickletools
    f = io.BytesIO(data)
    for _ in range(5):
        for _ in pickletools.genops(f):
            pass
    at = f.tell()
    return data[:at] + (int.from_bytes(data[at:at + 8], "little") + 1).to_bytes(8, "little") + data[at + 8:]


def _plain(content: bytes):
    return lambda good, unet: content


MEMO_BOMB = P2 + pickle.EMPTY_DICT + pickle.LONG_BINPUT + (2 ** 31 - 5).to_bytes(4, "little") + pickle.STOP
ST, PTH = "unet.safetensors", "unet.pth"
CASES: dict[str, tuple] = {}
for where in ("len1", "len7", "len8", "hdr1", "hdr_mid", "hdr_end-1", "hdr_end", "data1", "data_mid", "last-1"):
    CASES[f"st-truncated-{where}"] = (_truncate("safetensors", where), ST, "error", "")
for where in ("100", "tenth", "quarter", "half", "3quarters", "last-1"):
    CASES[f"zip-truncated-{where}"] = (_truncate("zip", where), PTH, "error", "")
    CASES[f"legacy-truncated-{where}"] = (_truncate("legacy", where), PTH, "error", "")
CASES.update({
    # safetensors headers
    "st-header-not-json": (_json_syntax, ST, "error", "not valid JSON"),
    "st-header-not-utf8": (_poke("safetensors", lambda d: 12, b"\xff\xfe"), ST, "error", "JSON"),
    "st-header-first-byte": (_poke("safetensors", lambda d: 8, b"x"), ST, "error", "unknown content"),
    "st-header-array": (lambda g, u: st_join(b"[1, 2, 3]", b""), ST, "error", "not a checkpoint"),
    "st-header-len-1TB": (_poke("safetensors", lambda d: 0, TB.to_bytes(8, "little")), ST, "error", "header claims"),
    "st-header-len-max": (_poke("safetensors", lambda d: 0, b"\xff" * 8), ST, "error", "header claims"),
    "st-header-len-short": (_poke("safetensors", lambda d: 0, (10).to_bytes(8, "little")), ST, "error", ""),
    "st-entry-not-dict": (_st_header_edit(lambda h: h.update({_first(h): 5})), ST, "error", "without dtype"),
    "st-entry-missing-shape": (_st_header_edit(lambda h: h[_first(h)].pop("shape")), ST, "error", "without"),
    "st-metadata-not-str": (_st_header_edit(_meta_not_str), ST, "error", "__metadata__"),
    "st-duplicate-key": (_duplicate_key, ST, "error", "duplicate"),
    "st-shape-1TB": (_shape([TB]), ST, "error", "shape"),
    "st-shape-negative": (_shape([-1, 4]), ST, "error", "invalid shape"),
    "st-shape-float": (_shape([2.0, 4]), ST, "error", "invalid shape"),
    "st-shape-bool": (_shape([True]), ST, "error", "invalid shape"),
    "st-shape-other": (_shape([1]), ST, "error", "spanning"),
    "st-offsets-1TB": (_offsets([0, TB]), ST, "error", "past the end"),
    "st-offsets-reversed": (_offsets([16, 0]), ST, "error", "invalid data_offsets"),
    "st-offsets-negative": (_offsets([-16, 0]), ST, "error", "invalid data_offsets"),
    "st-offsets-three": (_offsets([0, 16, 32]), ST, "error", "invalid data_offsets"),
    "st-offsets-string": (_offsets(["0", "16"]), ST, "error", "invalid data_offsets"),
    "st-offsets-overlap": (_st_header_edit(_overlap), ST, "error", "overlaps"),
    "st-trailing-bytes": (lambda g, u: _st(g) + b"\0" * 64, ST, "error", "cover"),
    "st-dtype-unknown": (_dtype("Q4_K"), ST, "error", "dtype"),
    "st-dtype-number": (_dtype(7), ST, "error", "dtype"),
    "st-dtype-F64-header-only": (_dtype("F64"), ST, "error", "spanning"),
    # wrong dtypes where floats are expected
    "st-int8-weights": (_int_weights(torch.int8), ST, "error", "dtype the network cannot use"),
    "st-uint8-weights": (_int_weights(torch.uint8), ST, "error", "dtype the network cannot use"),
    "st-int64-weights": (_int_weights(torch.int64), ST, "error", "dtype the network cannot use"),
    "st-bool-weights": (_int_weights(torch.bool), ST, "error", "dtype the network cannot use"),
    "st-float64-weights": (_st_tensor_edit(lambda t: t.double()), ST, "loaded", ""),
    "st-fp8-weights": (_st_tensor_edit(lambda t: t.to(torch.float8_e4m3fn)), ST, "loaded", ""),
    # NaN / inf weights
    "st-nan-fp32": (_nan(float("nan")), ST, "error", "NaN or infinite"),
    "st-inf-fp32": (_nan(float("inf"), where=5), ST, "error", "conv_in"),
    "st-neginf-fp16": (_nan(float("-inf"), torch.float16), ST, "error", "NaN or infinite"),
    "st-nan-bf16-last": (_nan(float("nan"), torch.bfloat16, where=-1), ST, "error", "NaN or infinite"),
    "st-nan-fp8": (_st_tensor_edit(lambda t: torch.full_like(t, float("nan")).to(torch.float8_e4m3fn)), ST,
                   "error", "NaN or infinite"),
    # embedded configuration (what our converter writes)
    "st-config-not-json": (_embedded_config("{not json"), ST, "error", "i2vgen_config"),
    "st-config-list": (_embedded_config("[1, 2]"), ST, "error", "i2vgen_config"),
    "st-config-garbage-fields": (_embedded_config('{"variant": "i2vgen_xl", "model_channels": "many"}'), ST,
                                 "error", ""),
    "st-config-wrong-variant": (_embedded_config('{"variant": "sd15", "model_channels": 32}'), ST, "error", ""),
    "st-config-disagrees": (_embedded_config('{"variant": "i2vgen_xl", "model_channels": 64}'), ST, "error", ""),
    # torch storages claiming more than the file holds
    "zip-storage-1TB": (_fake_zip(numel_claim=TB // 4), PTH, "error", "need"),
    "zip-view-1TB": (_fake_zip(size=(TB // 4,)), PTH, "error", ""),
    "zip-view-offset": (_fake_zip(size=(4,), stride=(2,)), PTH, "error", ""),
    "zip-storage-type-evil": (_fake_zip(kind="Tensor"), PTH, "error", ""),
    "legacy-storage-1TB": (_fake_legacy(numel_claim=TB // 4), PTH, "error", "wrong size"),
    "legacy-storage-count": (_legacy_count, PTH, "error", "wrong size"),
    "legacy-storage-short": (_fake_legacy(record=8), PTH, "error", "cut short"),
    "legacy-bytes8-1TB": (lambda g, u: torch_legacy(P4 + pickle.BINBYTES8 + TB.to_bytes(8, "little") + b"ab", []), PTH,
                          "error", "damaged"),
    # a damaged memo index: C pickle readers grow an array to it (minutes, gigabytes)
    "zip-memo-index-2G": (_members(lambda n, d: [(n, MEMO_BOMB if n.endswith("/data.pkl") else d)]), PTH, "error",
                          "no tensors"),
    "legacy-memo-index-2G": (lambda g, u: torch_legacy(MEMO_BOMB, []), PTH, "error", "no tensors"),
    "legacy-no-tensors": (lambda g, u: torch_legacy(pickle.dumps({"a": 1}, protocol=2), []), PTH, "error",
                          "no tensors"),
    # zip .pth members
    "zip-no-data-pkl": (_members(lambda n, d: [] if n.endswith("/data.pkl") else [(n, d)]), PTH, "error", "data.pkl"),
    "zip-extra-member": (_members(lambda n, d: [(n, d)] + ([(n.rsplit("/", 1)[0] + "/notes.txt", b"hi")]
                                                           if n.endswith("/version") else [])), PTH, "loaded", ""),
    "zip-second-root": (_members(lambda n, d: [(n, d)] + ([("other/notes.txt", b"hi")] if n.endswith("/version")
                                                          else [])), PTH, "error", "top folder"),
    "zip-escaping-member": (_members(lambda n, d: [(n.split("/")[0] + "/../../escape" if _storage_named(n) else n, d)]),
                            PTH, "error", "top folder"),
    "zip-absolute-member": (_members(lambda n, d: [(n, d)] + ([("/etc/evil", b"x")] if n.endswith("/version")
                                                             else [])), PTH, "error", ""),
    "zip-missing-storage": (_members(lambda n, d: [] if _storage_named(n) else [(n, d)]), PTH, "error", "missing"),
    "zip-short-storage": (_members(lambda n, d: [(n, d[:len(d) // 2] if _storage_named(n) else d)]), PTH, "error",
                          "need"),
    "zip-empty-storage": (_members(lambda n, d: [(n, b"" if _storage_named(n) else d)]), PTH, "error", "need"),
    "zip-long-storage": (_members(lambda n, d: [(n, d + b"\0" * 64 if _storage_named(n) else d)]), PTH, "loaded", ""),
    "zip-duplicate-member": (_members(lambda n, d: [(n, d)] * (2 if n.endswith("/version") else 1)), PTH, "error",
                             "twice"),
    "zip-random-data-pkl": (_members(lambda n, d: [(n, os.urandom(len(d)) if n.endswith("data.pkl") else d)]), PTH,
                            "error", ""),
    "zip-deflated": (_deflated, PTH, "error", "compressed"),
    "zip-central-size-4GB": (_central_size, PTH, "error", ""),
    "zip-not-torch": (lambda g, u: _plain_zip(), PTH, "error", "data.pkl"),
    "zip-torchscript": (_torchscript, "model.pt", "error", "TorchScript"),
    "zip-list-of-tensors": (lambda g, u: _saved([torch.ones(2)]), PTH, "error", "no tensors"),
    "zip-int-keys": (lambda g, u: _saved({1: torch.ones(2), 2: torch.ones(3)}), PTH, "error", "no tensors"),
    "zip-bare-tensor": (lambda g, u: _saved(torch.ones(2)), PTH, "error", "no tensors"),
    # not checkpoints at all, and empty files
    "git-lfs-pointer": (_plain(b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 5\n"), ST, "error",
                        "LFS"),
    "html-page": (_plain(b"<!DOCTYPE html><html><body>Access denied</body></html>"), ST, "error", "web page"),
    "json-file": (_plain(b'{"_class_name": "I2VGenXLUNet"}'), "config.safetensors", "error", "JSON"),
    "gguf": (_plain(b"GGUF\x03\x00\x00\x00" + b"\0" * 32), "unet.gguf", "error", "GGUF"),
    "random-bytes": (_plain(bytes(range(256)) * 4), ST, "error", "unknown content"),
    "one-byte": (_plain(b"\x80"), PTH, "error", ""),
    "eight-zero-bytes": (_plain(b"\0" * 8), ST, "error", ""),
    "len-plus-brace": (_plain((1).to_bytes(8, "little") + b"{"), ST, "error", "not valid JSON"),
    "empty-header": (_plain((2).to_bytes(8, "little") + b"{}"), ST, "error", "no tensors"),
})
for ext in (".safetensors", ".sft", ".pth", ".ckpt", ".bin", ".pt"):
    CASES[f"zero-bytes{ext}"] = (_plain(b""), f"unet{ext}", "error", "empty")
for name in ROUTES:
    for container in ("raw", "zip", "legacy"):
        CASES[f"code-{name}-{container}"] = (_route(name, container), PTH, "error", "")
# the extension does not decide the format: the content does
for ext in (".ckpt", ".bin", ".pt", ".sft", ".pth"):
    CASES[f"safetensors-named{ext}"] = (lambda g, u: _st(g), f"unet{ext}", "loaded", "")
for ext in (".safetensors", ".sft", ".ckpt"):
    CASES[f"zip-named{ext}"] = (lambda g, u: g["zip"].read_bytes(), f"unet{ext}", "loaded", "")
CASES["legacy-named.bin"] = (lambda g, u: g["legacy"].read_bytes(), "unet.bin", "loaded", "")


def _plain_zip() -> bytes:
    import io
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "hello")
    return buf.getvalue()


def _saved(obj) -> bytes:
    import io
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize("case", list(CASES))
def test_broken_file(case, good, unet, tmp_path):
    build, name, expected, words = CASES[case]
    path = tmp_path / name
    path.write_bytes(build(good, unet))
    outcome, result = attempt(path)
    assert not os.path.exists(MARKER), f"{case} ran code"
    assert outcome == expected, result if outcome == "error" else f"{case} loaded"
    if outcome == "error":
        assert words.lower() in result.lower(), result
    else:
        assert same_weights(result, unet) or case in ("st-fp8-weights",), f"{case} loaded other weights"


def test_valid_files_load(good, unet):
    for kind, path in good.items():
        outcome, loaded = attempt(path)
        assert outcome == "loaded" and same_weights(loaded, unet), kind


# ------------------------------------------------------------------------------------------------ folders
def _folder(tmp_path, good, config=None, weights=True, name="unet"):
    folder = tmp_path / name
    folder.mkdir()
    if weights:
        (folder / "diffusion_pytorch_model.safetensors").write_bytes(
            (good["folder"] / "diffusion_pytorch_model.safetensors").read_bytes())
    if config is not None:
        (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    return folder


def _config(good, **changes):
    return {**json.loads((good["folder"] / "config.json").read_text()), **changes}


@pytest.mark.parametrize("case", ["empty", "config-only", "no-config", "config-not-json", "config-list",
                                  "config-groups-bad", "config-groups-text", "config-channels", "config-layers",
                                  "config-cross", "weights-truncated", "weights-are-a-folder", "whole-repo",
                                  "bin-weights", "weights-nan"])
def test_folders(case, good, unet, tmp_path):
    label = "unet"
    if case == "empty":
        folder, expected = _folder(tmp_path, good, weights=False), "error"
    elif case == "config-only":
        folder, expected = _folder(tmp_path, good, _config(good), weights=False), "error"
    elif case == "no-config":
        folder, expected = _folder(tmp_path, good), "loaded"
    elif case == "config-not-json":
        folder, expected = _folder(tmp_path, good, '{"in_channels": 4,'), "error"
    elif case == "config-list":
        folder, expected = _folder(tmp_path, good, "[4, 4]"), "error"
    elif case == "config-groups-bad":
        folder, expected = _folder(tmp_path, good, _config(good, norm_num_groups=7)), "error"
    elif case == "config-groups-text":
        folder, expected = _folder(tmp_path, good, _config(good, norm_num_groups="thirty")), "error"
    elif case == "config-channels":
        folder, expected = _folder(tmp_path, good, _config(good, block_out_channels=[320, 640, 1280, 1280])), "error"
    elif case == "config-layers":
        folder, expected = _folder(tmp_path, good, _config(good, layers_per_block=2)), "error"
    elif case == "config-cross":
        folder, expected = _folder(tmp_path, good, _config(good, cross_attention_dim=1024)), "error"
    elif case == "weights-truncated":
        folder = _folder(tmp_path, good, _config(good))
        weights = folder / "diffusion_pytorch_model.safetensors"
        weights.write_bytes(weights.read_bytes()[:5000])
        expected, label = "error", "unet/diffusion_pytorch_model.safetensors"
    elif case == "weights-are-a-folder":
        folder = _folder(tmp_path, good, _config(good), weights=False)
        (folder / "diffusion_pytorch_model.safetensors").mkdir()
        expected = "error"
    elif case == "whole-repo":
        repo = tmp_path / "i2vgen-xl"
        repo.mkdir()
        _folder(repo, good, _config(good))
        folder, expected, label = repo, "loaded", "i2vgen-xl"
    elif case == "bin-weights":
        folder = _folder(tmp_path, good, _config(good), weights=False)
        torch.save(export_state_dict(unet, "diffusers"), folder / "diffusion_pytorch_model.bin")
        expected = "loaded"
    else:
        folder = _folder(tmp_path, good, _config(good), weights=False)
        sd = export_state_dict(unet, "diffusers")
        sd["conv_out.bias"] = torch.full_like(sd["conv_out.bias"], float("nan"))
        (folder / "diffusion_pytorch_model.safetensors").write_bytes(st_bytes(sd))
        expected = "error"
    outcome, result = attempt(folder, label)
    assert outcome == expected, result
    if outcome == "loaded":
        assert same_weights(result, unet)


# ------------------------------------------------------------------------------------------------ links and paths
def test_links_and_special_files(good, unet, tmp_path):
    models, outside = tmp_path / "models", tmp_path / "outside"
    models.mkdir()
    outside.mkdir()
    target = outside / "real.safetensors"
    target.write_bytes(good["safetensors"].read_bytes())
    (models / "inside.safetensors").write_bytes(good["safetensors"].read_bytes())
    (models / "leaving.safetensors").symlink_to(target)
    (models / "sub").mkdir()
    (models / "sub" / "ok.safetensors").symlink_to(models / "inside.safetensors")
    (models / "dangling.safetensors").symlink_to(outside / "gone.safetensors")
    (models / "loop.safetensors").symlink_to(models / "loop.safetensors")
    (models / "dirlink").symlink_to(outside)

    # the core loader takes any path it is given; broken links and special files are clear errors
    assert attempt(models / "leaving.safetensors")[0] == "loaded"
    outcome, msg = attempt(models / "dangling.safetensors")
    assert outcome == "error" and "does not exist" in msg
    outcome, msg = attempt(models / "loop.safetensors")
    assert outcome == "error" and "cannot be opened" in msg
    fifo = models / "pipe.safetensors"
    os.mkfifo(fifo)
    outcome, msg = attempt(fifo, seconds=10)  # reading a pipe would block forever
    assert outcome == "error" and "not a regular file" in msg
    outcome, msg = attempt(models / "missing.pth")
    assert outcome == "error" and "not found" in msg
    if os.geteuid() != 0:  # root reads anything
        locked = models / "locked.safetensors"
        locked.write_bytes(b"x" * 100)
        locked.chmod(0)
        outcome, msg = attempt(locked)
        assert outcome == "error" and "permission" in msg.lower()


# ------------------------------------------------------------------------------------------------ memory
HUGE = ["st-header-len-1TB", "st-header-len-max", "st-shape-1TB", "st-offsets-1TB", "zip-storage-1TB",
        "zip-view-1TB", "legacy-storage-1TB", "legacy-bytes8-1TB", "zip-central-size-4GB", "zip-memo-index-2G", "legacy-memo-index-2G"]

PROBE = r"""
import json, resource, sys, tracemalloc
import torch
from i2vgen_core import CheckpointError, load_unet
load_unet(sys.argv[1])  # warm up: one valid load
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
out = {}
for path in sys.argv[2:]:
    try:
        load_unet(path)
        out[path] = "loaded"
    except CheckpointError as err:
        out[path] = "error: " + str(err)
    except BaseException as err:
        out[path] = f"OTHER {type(err).__name__}: {err}"
peak_py = tracemalloc.get_traced_memory()[1]
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
print(json.dumps({"outcomes": out, "rss_growth_kib": grew, "python_peak_bytes": peak_py}))
"""


def test_terabyte_claims_allocate_nothing(good, unet, tmp_path):
    paths = []
    for case in HUGE:
        build, name, _, _ = CASES[case]
        path = tmp_path / f"{case}{Path(name).suffix}"
        path.write_bytes(build(good, unet))
        paths.append(str(path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[3]),
                                                        os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", PROBE, str(good["safetensors"]), *paths], capture_output=True,
                         text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    for path, outcome in report["outcomes"].items():
        assert outcome.startswith("error: ") and "allocate" not in outcome, (path, outcome)
    print(f"\n1 TB claims: peak RSS growth {report['rss_growth_kib']} KiB, Python peak "
          f"{report['python_peak_bytes']} bytes over {len(paths)} files")
    assert report["rss_growth_kib"] < 64 * 1024
    assert report["python_peak_bytes"] < 16 * 2 ** 20


def test_nonfinite_scan(unet):
    sd = dict(unet.state_dict())
    assert nonfinite(sd) == []
    big = {"w": torch.full((1000, 1000), 6e4, dtype=torch.float16), "x": torch.full((4, 4), 3e38)}
    assert nonfinite(big) == []  # large finite values (whose sum would overflow) are not flagged
    fp8 = {"a": torch.full((9,), 448.0).to(torch.float8_e4m3fn), "b": torch.full((9,), 5e4).to(torch.float8_e5m2)}
    assert nonfinite(fp8) == []
    fp8["b"][3] = float("inf")
    fp8["a"][0] = float("nan")
    assert nonfinite(fp8) == ["a", "b"]
    sd["out.2.bias"] = sd["out.2.bias"].clone()
    sd["out.2.bias"][1] = float("nan")
    assert nonfinite(sd) == ["out.2.bias"]
    assert nonfinite({"i": torch.ones(3, dtype=torch.int64), "e": torch.empty(0)}) == []


def test_converter_reports_broken_files(good, tmp_path, capsys):
    from i2vgen_core.weights.convert import main as convert_main

    broken = tmp_path / "cut.pth"
    broken.write_bytes(good["zip"].read_bytes()[:5000])
    assert convert_main([str(broken), str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "cut.pth" in err and "download it again" in err
    assert not (tmp_path / "out.safetensors").exists()


# -------------------------------------------------------------------------------------------- refused through load_unet
class Evil:
    def __reduce__(self):
        return (print, ("this would have run code",))


def test_pickle_that_needs_code_is_refused(tmp_path):
    legacy = tmp_path / "legacy.pth"
    with open(legacy, "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    zipped = tmp_path / "zipped.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "hook": Evil()}, zipped)
    for path in (legacy, zipped):
        with pytest.raises(CheckpointError, match="refused for safety"):
            load_unet(path)


def test_empty_truncated_and_missing_files(tmp_path):
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_unet(tmp_path / "empty.safetensors")
    unet = random_unet()
    save_file({k: v.contiguous() for k, v in export_state_dict(unet, "diffusers").items()},
              str(tmp_path / "full.safetensors"))
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_unet(tmp_path / "cut.safetensors")
    torch.save({"state_dict": export_state_dict(unet, "vgen")}, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_unet(tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_unet(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="holds no tensors"):
        load_unet({"state_dict": {}})


# ------------------------------------------------------------------------------------------------ header peek
def _safe_open_summary(path) -> tuple[int, str | None]:
    """What the loader node computed with the safetensors library before it used the core's reader."""
    from safetensors import safe_open

    codes = {"F64": "fp64", "F32": "fp32", "F16": "fp16", "BF16": "bf16", "F8_E4M3": "fp8_e4m3fn",
             "F8_E5M2": "fp8_e5m2"}
    counts: dict[str, int] = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            sl = f.get_slice(key)
            counts[sl.get_dtype()] = counts.get(sl.get_dtype(), 0) + math.prod(sl.get_shape())
    return sum(counts.values()), codes.get(max(counts, key=counts.get)) if counts else None


@pytest.mark.parametrize("tensors", [
    {"a": torch.zeros(3, 4, dtype=torch.float16), "b": torch.zeros(5, dtype=torch.float32)},
    {"b": torch.zeros(4, dtype=torch.bfloat16), "a": torch.zeros(4, dtype=torch.float16)},  # a tie
    {"i": torch.zeros(100, dtype=torch.int64), "w": torch.zeros(2, dtype=torch.float16)},  # mostly not floats
    {"w": torch.zeros(7, dtype=torch.float8_e4m3fn), "s": torch.zeros(1, dtype=torch.float32)},
    {"e": torch.zeros(0, dtype=torch.float16)},
    {},
], ids=["fp16", "tie", "ints", "fp8", "empty-tensor", "no-tensors"])
def test_header_peek_matches_the_safetensors_library(tensors, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "x.safetensors"
    save_file(tensors, str(path))
    assert peek_safetensors(path) == _safe_open_summary(path)


def test_header_peek_of_the_real_layout(good, unet):
    assert peek_safetensors(good["safetensors"]) == (sum(p.numel() for p in unet.parameters()), "fp32")


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][1].endswith((".safetensors", ".sft"))])
def test_header_peek_of_broken_files_is_a_checkpoint_error(case, good, unet, tmp_path):
    build, file_name, _, _ = CASES[case]
    path = tmp_path / file_name
    path.write_bytes(build(good, unet))
    with deadline(60):
        try:
            params, dominant = peek_safetensors(path)
        except CheckpointError as err:
            assert path.name in str(err)
        else:
            assert params >= 0 and (dominant is None or dominant in dtypes.TORCH_NAMES)


def test_header_peek_of_special_files(tmp_path):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path, tmp_path / "missing.safetensors"):
        with deadline(10), pytest.raises(CheckpointError):  # a pipe would block a reader forever
            peek_safetensors(path)
