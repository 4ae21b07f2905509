"""`python -m i2vgen_core <command> [args]`: the package's command-line tools behind one entry.

``python -m i2vgen_core --help`` lists the commands; ``python -m i2vgen_core <command> --help`` shows one command's
arguments. A command's module is imported only when that command runs, so the listing (and ``estimate``) never
imports torch. Exit status: 0 when the command succeeds, 2 for a usage error (no or an unknown command, bad
arguments), otherwise the command's own.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import shlex
import sys
from typing import Callable, NamedTuple, Optional

PROG = "python -m i2vgen_core"


class Command(NamedTuple):
    """A command: the module (relative to this package) whose ``main(argv)`` runs it ("" for a command defined
    here, as ``<name>_main``), and its one-line summary."""

    module: str
    summary: str


COMMANDS: dict[str, Command] = {
    "demo-weights": Command("weights.demo", "write random-weight stand-ins of every model file the example "
                                            "workflows name (DEST, or --list)"),
    "convert": Command("weights.convert", "convert a UNet checkpoint (.pth/.ckpt/.bin/.safetensors, diffusers "
                                          "folder) to safetensors"),
    "split-encoders": Command("weights.encoder_files", "split open_clip_pytorch_model.bin into text/vision "
                                                       "safetensors, or pull the VAE out of an SD2.1 .ckpt"),
    "info": Command("", "what a checkpoint is: format, variant, inferred config, parameters, dtype"),
    "estimate": Command("", "the estimated peak memory of a run (no torch needed)"),
}


def usage() -> str:
    """The top-level help: the commands, one line each."""
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} <command> [args]", "", "I2VGen-XL core tools.", "", "commands:"]
    lines += [f"  {name:<{width}}  {cmd.summary}" for name, cmd in COMMANDS.items()]
    lines += ["", f"'{PROG} <command> --help' shows a command's arguments."]
    return "\n".join(lines)


def _entry(name: str) -> Callable[[list[str]], Optional[int]]:
    """The command's main; its module (torch, for most) is imported only now."""
    module = COMMANDS[name].module
    if not module:
        return globals()[f"{name.replace('-', '_')}_main"]
    return importlib.import_module(f".{module}", __package__).main


def main(argv: Optional[list[str]] = None) -> int:
    """Run one command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(usage(), file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    if name in ("-h", "--help", "help"):
        if name == "help" and rest and rest[0] in COMMANDS:  # `help convert` = `convert --help`
            return main([rest[0], "--help"])
        print(usage())
        return 0
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        print(f"{PROG}: unknown command '{name}' (commands: {', '.join(COMMANDS)}){hint}", file=sys.stderr)
        return 2
    try:
        status = _entry(name)(rest)
    except SystemExit as stop:  # argparse's --help (0) and usage errors (2), or a command's sys.exit
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    return int(status or 0)


# ---------------------------------------------------------------------------------------------- old module paths
def run_moved(old: str, command: str, argv: Optional[list[str]] = None) -> int:
    """Run `command` for an old ``python -m <old>`` command line, after one line on stderr saying where it went."""
    argv = list(sys.argv[1:] if argv is None else argv)
    print(f"moved: {shlex.join([*PROG.split(), command, *argv])} (was python -m {old})", file=sys.stderr)
    return main([command, *argv])


def moved_attribute(old: str, new: str) -> Callable[[str], object]:
    """A module ``__getattr__`` for an old module path that keeps only its command line: asking it for any name
    raises an ImportError naming the module that has it now (``from old import f`` fails on that line, saying
    where ``f`` went). Dunder look-ups stay AttributeErrors, so ``hasattr``, ``import *`` and tools that probe
    modules behave as for any module."""
    def __getattr__(name: str) -> object:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        raise ImportError(f"{old} keeps only its old command line; import {name!r} from {new} "
                          f"(from {new} import {name})", name=old)
    return __getattr__


# ---------------------------------------------------------------------------------------------- info
def info_main(argv: list[str]) -> int:
    """`info PATH`: read a checkpoint with the package's defensive reader and say what it is."""
    parser = argparse.ArgumentParser(prog=f"{PROG} info", description=COMMANDS["info"].summary + ". Pickles are "
                                     "read without unpickling arbitrary objects, as the loader reads them.")
    parser.add_argument("path", help="checkpoint file (.pth/.ckpt/.bin/.safetensors) or diffusers unet folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)

    from .config import VARIANT_NAMES, variant_config
    from .weights.load import load_state_dict_any
    from .weights.read import CheckpointError

    try:
        sd, config, fmt = load_state_dict_any(args.path)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    dtypes: dict[str, int] = {}
    for tensor in sd.values():
        key = str(tensor.dtype).replace("torch.", "")
        dtypes[key] = dtypes.get(key, 0) + tensor.numel()
    parameters = sum(dtypes.values())
    report = {"path": args.path, "format": fmt, "variant": config.variant, "tensors": len(sd),
              "parameters": parameters, "dtypes": dtypes, "config": config.to_dict()}
    if args.json:
        print(json.dumps(report))
        return 0
    by_size = sorted(dtypes.items(), key=lambda kv: -kv[1])
    dtype_text = by_size[0][0] if len(by_size) == 1 else ", ".join(f"{d} ({n:,})" for d, n in by_size)
    print(f"{args.path}: {VARIANT_NAMES[config.variant]} UNet, {fmt} format")
    print(f"  variant     {config.variant}")
    print(f"  parameters  {parameters:,} in {len(sd)} tensors")
    print(f"  dtype       {dtype_text}")
    released = variant_config(config.variant).to_dict()
    differs = ", ".join(f"{k}={json.dumps(v)}" for k, v in report["config"].items() if released[k] != v)
    print(f"  config      {differs + ', the rest as released' if differs else 'as released'}")
    return 0


# ---------------------------------------------------------------------------------------------- estimate
def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def estimate_main(argv: list[str]) -> int:
    """`estimate`: the memory estimate the nodes show before a run, for a size given on the command line."""
    from . import memory
    from .config import VARIANTS
    from .dtypes import WEIGHT_NAMES
    from .sizes import pixel_size_error

    parser = argparse.ArgumentParser(prog=f"{PROG} estimate", description=COMMANDS["estimate"].summary + ": UNet "
                                     "and VAE weights, sampling activations and the VAE decode, fitted to GPU "
                                     "measurements (i2vgen_core/memory.py).")
    parser.add_argument("--variant", choices=VARIANTS, default="i2vgen_xl", help="default: i2vgen_xl")
    parser.add_argument("--width", type=_positive, default=1280, help="pixels (default 1280)")
    parser.add_argument("--height", type=_positive, default=704, help="pixels (default 704)")
    parser.add_argument("--frames", type=_positive, default=16, help="default 16")
    parser.add_argument("--batch", type=_positive, default=1, help="default 1")
    parser.add_argument("--dtype", choices=WEIGHT_NAMES, default="fp16",
                        help="UNet weight dtype (default fp16; fp8 computes in fp16)")
    parser.add_argument("--free", type=float, metavar="GIB", help="memory free on the device: prints what to "
                        "change when the run does not fit")
    args = parser.parse_args(argv)
    problem = pixel_size_error(args.width, args.height)
    if problem:
        parser.error(problem)
    estimate = memory.estimate_run(args.variant, args.width, args.height, args.frames, args.batch,
                                   weight_dtype=args.dtype)
    free = int(args.free * memory.GIB) if args.free is not None else None
    line, warning = memory.describe(estimate, free=free, frames=args.frames, weight_dtype=args.dtype)
    print(line)
    print(f"With ComfyUI offloading the idle model: {memory.gib(estimate.minimum)}")
    if warning:
        print(warning)
    return 0


if __name__ == "__main__":
    sys.exit(main())
