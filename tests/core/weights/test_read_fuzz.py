"""Property-based fuzzing of the checkpoint readers (hypothesis, derandomized so CI is deterministic).

Valid small checkpoints in every accepted format (safetensors, zip .pth, legacy .pth, diffusers folder) are mutated:
byte flips, truncations, insertions and deletions, safetensors header edits (dtype, shape, offsets, names,
metadata), zip members and pickles rewritten with valid CRCs, key renames and deletions, tensor shape, dtype and
value changes, config.json edits. Property: every load ends in a `CheckpointError` naming the file and saying what
to do, or loads weights that are all finite floats; never another exception or a hang.
"""

from __future__ import annotations

import collections
import json
import os
import shutil

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from i2vgen_core import export_state_dict  # noqa: E402
from i2vgen_core.weights.read import SAFETENSORS_DTYPES  # noqa: E402

from badfiles import SMALL, attempt, good_files, st_bytes, st_join, st_split, zip_rewrite  # noqa: E402
from helpers import random_unet  # noqa: E402

#: examples per format (about 300 in all, a minute or two of CPU); I2VGEN_FUZZ_SCALE=N runs N times as many, with
#: fresh random examples instead of the fixed CI sequence
SCALE = int(os.environ.get("I2VGEN_FUZZ_SCALE", "1"))
EXAMPLES = {"safetensors": 100, "zip": 70, "legacy": 60, "folder": 70}


def fuzz_settings(n: int):
    return settings(max_examples=n * SCALE, deadline=None, derandomize=SCALE == 1, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def unet():
    return random_unet(**SMALL)


@pytest.fixture(scope="module")
def good(unet, tmp_path_factory):
    return good_files(unet, tmp_path_factory.mktemp("fuzz_good"))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


# ------------------------------------------------------------------------------------------------ strategies
position = st.one_of(st.integers(0, 6000), st.integers(-6000, -1), st.floats(0, 1))
byte_op = st.one_of(
    st.tuples(st.just("flip"), position, st.integers(1, 255)),
    st.tuples(st.just("cut"), position),
    st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=24)),
    st.tuples(st.just("delete"), position, st.integers(1, 256)),
    st.tuples(st.just("overwrite"), position, st.binary(min_size=1, max_size=24)),
)
byte_ops = st.lists(byte_op, min_size=1, max_size=3)
odd_ints = st.one_of(st.integers(-3, 70), st.sampled_from([2 ** 31, 2 ** 32 + 1, 2 ** 40, 2 ** 63, 2 ** 64 + 5]))
json_value = st.one_of(st.none(), st.booleans(), odd_ints, st.floats(allow_nan=False), st.text(max_size=12),
                       st.lists(odd_ints, max_size=5))
header_op = st.one_of(
    st.tuples(st.just("dtype"), st.integers(0, 10 ** 6),
              st.one_of(st.sampled_from(sorted(SAFETENSORS_DTYPES)), st.sampled_from(["F4", "", "f32", "C64"]),
                        json_value)),
    st.tuples(st.just("shape"), st.integers(0, 10 ** 6), st.one_of(st.lists(odd_ints, max_size=4), json_value)),
    st.tuples(st.just("offsets"), st.integers(0, 10 ** 6),
              st.one_of(st.lists(odd_ints, min_size=2, max_size=2), json_value)),
    st.tuples(st.just("shift"), st.integers(0, 10 ** 6), st.integers(-64, 64)),
    st.tuples(st.just("rename"), st.integers(0, 10 ** 6), st.text(max_size=40)),
    st.tuples(st.just("drop"), st.integers(0, 10 ** 6)),
    st.tuples(st.just("metadata"), st.dictionaries(st.sampled_from(["format", "i2vgen_config", "x"]),
                                                   st.one_of(st.text(max_size=30), json_value), max_size=3)),
)
tensor_op = st.one_of(
    st.tuples(st.just("rename"), st.integers(0, 10 ** 6), st.text(max_size=40)),
    st.tuples(st.just("drop"), st.integers(0, 10 ** 6)),
    st.tuples(st.just("reshape"), st.integers(0, 10 ** 6), st.lists(st.integers(0, 6), max_size=4)),
    st.tuples(st.just("dtype"), st.integers(0, 10 ** 6),
              st.sampled_from(["int8", "uint8", "bool", "int64", "float16", "bfloat16", "float64",
                               "float8_e4m3fn", "complex64"])),
    st.tuples(st.just("value"), st.integers(0, 10 ** 6), st.sampled_from([float("nan"), float("inf"),
                                                                             -float("inf"), 1e30, 0.0])),
    st.tuples(st.just("extra"), st.text(max_size=20)),
)
tensor_ops = st.lists(tensor_op, min_size=1, max_size=3)


# ------------------------------------------------------------------------------------------------ mutations
def _at(pos, n: int) -> int:
    if isinstance(pos, float):
        return int(pos * n)
    return max(0, min(n, pos if pos >= 0 else n + pos))


def mutate_bytes(data: bytes, ops) -> bytes:
    """Apply byte-level mutations."""
    data = bytearray(data)
    for op in ops:
        at = _at(op[1], len(data))
        if op[0] == "flip" and at < len(data):
            data[at] ^= op[2]
        elif op[0] == "cut":
            del data[at:]
        elif op[0] == "insert":
            data[at:at] = op[2]
        elif op[0] == "delete":
            del data[at:at + op[2]]
        elif op[0] == "overwrite":
            data[at:at + len(op[2])] = op[2]
    return bytes(data)


def mutate_header(data: bytes, ops) -> bytes:
    """Apply safetensors header edits (the data section is kept; the length field is rewritten)."""
    header, body = st_split(data)
    for op in ops:
        names = [k for k in header if k != "__metadata__"]
        if op[0] == "metadata":
            header["__metadata__"] = op[1]
            continue
        if not names:
            continue
        name = names[op[1] % len(names)]
        entry = header[name]
        if op[0] == "dtype":
            entry["dtype"] = op[2]
        elif op[0] == "shape":
            entry["shape"] = op[2]
        elif op[0] == "offsets":
            entry["data_offsets"] = op[2]
        elif op[0] == "shift":
            entry["data_offsets"] = [o + op[2] for o in entry["data_offsets"]]
        elif op[0] == "rename":
            header[op[2]] = header.pop(name)
        elif op[0] == "drop":
            header.pop(name)
    return st_join(header, body)


def mutate_tensors(sd: dict[str, torch.Tensor], ops) -> dict[str, torch.Tensor]:
    """Apply state-dict-level edits: renames, deletions, shape, dtype and value changes, extra tensors."""
    sd = collections.OrderedDict(sd)
    for op in ops:
        if op[0] == "extra":
            sd[op[1]] = torch.zeros(3)
            continue
        if not sd:
            continue
        name = list(sd)[op[1] % len(sd)]
        if op[0] == "rename":
            sd[op[2]] = sd.pop(name)
        elif op[0] == "drop":
            sd.pop(name)
        elif op[0] == "reshape":
            sd[name] = torch.randn(op[2]) * 0.05
        elif op[0] == "dtype":
            sd[name] = sd[name].to(getattr(torch, op[2]))
        elif op[0] == "value":
            t = sd[name].clone()
            if t.numel():
                t.view(-1)[t.numel() // 2] = op[2]
            sd[name] = t
    return dict(sd)


def saved(fn):
    """The bytes a writer produces for a mutated state dict; examples the writers themselves refuse are skipped."""
    try:
        return fn()
    except Exception:  # noqa: BLE001 - e.g. a key safetensors cannot store: not a file the loader can meet
        hypothesis.reject()


def check(path, counts, label=None):
    outcome, _ = attempt(path, label)
    counts[outcome] += 1


def report(name: str, counts) -> None:
    print(f"\nfuzz {name}: {sum(counts.values())} examples, {counts['error']} CheckpointError, "
          f"{counts['loaded']} loaded, 0 other")
    assert counts["error"] > 0


# ------------------------------------------------------------------------------------------------ tests
def test_fuzz_safetensors(good, unet, work):
    counts = collections.Counter()
    base = good["safetensors"].read_bytes()
    sd = export_state_dict(unet, "diffusers")
    path = work / "fuzz.safetensors"

    @fuzz_settings(EXAMPLES["safetensors"])
    @given(kind=st.sampled_from(["bytes", "header", "header+bytes", "tensors"]), bops=byte_ops,
           hops=st.lists(header_op, min_size=1, max_size=3), tops=tensor_ops)
    def run(kind, bops, hops, tops):
        if kind == "tensors":
            data = saved(lambda: st_bytes(mutate_tensors(sd, tops)))
        else:
            data = mutate_header(base, hops) if "header" in kind else base
            data = mutate_bytes(data, bops) if "bytes" in kind else data
        path.write_bytes(data)
        check(path, counts)

    run()
    report("safetensors", counts)


def test_fuzz_zip_pth(good, unet, work):
    counts = collections.Counter()
    base = good["zip"].read_bytes()
    sd = export_state_dict(unet, "vgen")
    path = work / "fuzz.pth"

    @fuzz_settings(EXAMPLES["zip"])
    @given(kind=st.sampled_from(["bytes", "data.pkl", "storage", "tensors"]), bops=byte_ops, tops=tensor_ops)
    def run(kind, bops, tops):
        if kind == "bytes":
            data = mutate_bytes(base, bops)
        elif kind in ("data.pkl", "storage"):  # rewritten members keep valid CRCs: the pickle parser is reached
            want = "/data.pkl" if kind == "data.pkl" else "/data/0"
            data = zip_rewrite(base, lambda n, d: [(n, mutate_bytes(d, bops) if n.endswith(want) else d)])
        else:
            saved(lambda: torch.save({"state_dict": mutate_tensors(sd, tops)}, path))
            data = path.read_bytes()
        path.write_bytes(data)
        check(path, counts)

    run()
    report("zip .pth", counts)


def test_fuzz_legacy_pth(good, unet, work):
    counts = collections.Counter()
    base = good["legacy"].read_bytes()
    sd = export_state_dict(unet, "modelscope")
    path = work / "fuzz_legacy.pth"

    @fuzz_settings(EXAMPLES["legacy"])
    @given(kind=st.sampled_from(["bytes", "tensors", "tensors+bytes"]), bops=byte_ops, tops=tensor_ops)
    def run(kind, bops, tops):
        data = base
        if "tensors" in kind:
            saved(lambda: torch.save(mutate_tensors(sd, tops), path, _use_new_zipfile_serialization=False))
            data = path.read_bytes()
        if "bytes" in kind:
            data = mutate_bytes(data, bops)
        path.write_bytes(data)
        check(path, counts)

    run()
    report("legacy .pth", counts)


def test_fuzz_diffusers_folder(good, unet, work):
    counts = collections.Counter()
    config = json.loads((good["folder"] / "config.json").read_text())
    weights = (good["folder"] / "diffusion_pytorch_model.safetensors").read_bytes()
    sd = export_state_dict(unet, "diffusers")
    folder = work / "unet"

    @fuzz_settings(EXAMPLES["folder"])
    @given(kind=st.sampled_from(["config", "config-bytes", "weights", "tensors"]),
           edits=st.dictionaries(st.sampled_from(sorted(config) + ["variant", "model_channels"]), json_value,
                                 min_size=1, max_size=3),
           bops=byte_ops, tops=tensor_ops)
    def run(kind, edits, bops, tops):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        text = json.dumps(config)
        if kind == "config":
            text = json.dumps({**config, **edits})
        elif kind == "config-bytes":
            text = mutate_bytes(text.encode(), bops).decode("utf-8", "replace")
        (folder / "config.json").write_text(text)
        data = weights
        if kind == "weights":
            data = mutate_bytes(weights, bops)
        elif kind == "tensors":
            data = saved(lambda: st_bytes(mutate_tensors(sd, tops)))
        (folder / "diffusion_pytorch_model.safetensors").write_bytes(data)
        check(folder, counts, "unet")

    run()
    report("diffusers folder", counts)
