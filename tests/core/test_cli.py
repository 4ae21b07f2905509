"""`python -m i2vgen_core <command>`: the one command-line entry, its commands, and the old module paths' shims."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("demo-weights", "convert", "split-encoders", "info", "estimate")


def cli(*args: str, module: str = "i2vgen_core") -> subprocess.CompletedProcess:
    """Run `python -m <module> args` from the repository root (so it imports this checkout's package)."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_help_lists_every_command_without_importing_torch():
    code = ("import runpy, sys\n"
            "sys.argv = ['i2vgen_core', '--help']\n"
            "try:\n    runpy.run_module('i2vgen_core', run_name='__main__')\n"
            "except SystemExit as stop:\n    status = stop.code\n"
            "print('STATUS', status, 'TORCH', 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip().endswith("STATUS 0 TORCH False"), out.stdout
    lines = out.stdout.splitlines()
    assert lines[0].startswith("usage: python -m i2vgen_core <command>")
    for name in COMMANDS:
        assert sum(line.split()[:1] == [name] for line in lines) == 1, f"{name} not listed once:\n{out.stdout}"


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_its_own_help(name):
    out = cli(name, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: python -m i2vgen_core {name} "), out.stdout


def test_no_or_unknown_command_is_a_usage_error():
    out = cli("frobnicate")
    assert out.returncode == 2
    assert "unknown command 'frobnicate'" in out.stderr and all(name in out.stderr for name in COMMANDS)
    assert "did you mean 'convert'" in cli("convrt").stderr
    bare = cli()
    assert bare.returncode == 2 and "commands:" in bare.stderr


def test_bad_arguments_exit_2():
    out = cli("convert", "only-one-path")
    assert out.returncode == 2 and "required" in out.stderr
    out = cli("estimate", "--width", "1001")
    assert out.returncode == 2 and "multiple of 8" in out.stderr


def test_demo_weights_list():
    out = cli("demo-weights", "--list")
    assert out.returncode == 0, out.stderr
    from i2vgen_core.weights.demo import DEMO_FILES
    assert [line.split()[0] for line in out.stdout.splitlines()] == [f.relpath for f in DEMO_FILES]


@pytest.fixture(scope="module")
def tiny_pth(tmp_path_factory):
    """A tiny random MS-Vid2Vid-XL UNet saved as ModelScope's {'state_dict'} .pth."""
    import torch
    from i2vgen_core import build_unet, export_state_dict, tiny_config

    torch.manual_seed(0)
    unet = build_unet(tiny_config("ms_vid2vid_xl"))
    path = tmp_path_factory.mktemp("cli") / "tiny.pth"
    torch.save({"state_dict": export_state_dict(unet, "modelscope")}, path)
    return path, sum(p.numel() for p in unet.state_dict().values())


def test_convert_then_info(tiny_pth, tmp_path):
    src, parameters = tiny_pth
    dst = tmp_path / "tiny.fp16.safetensors"
    out = cli("convert", str(src), str(dst), "--dtype", "fp16")
    assert out.returncode == 0, out.stderr
    assert f"{parameters:,} parameters" in out.stdout and "ms_vid2vid_xl" in out.stdout
    from safetensors import safe_open
    with safe_open(str(dst), "pt") as f:
        assert f.metadata()["i2vgen_variant"] == "ms_vid2vid_xl"
        assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} == {"F16"}

    text = cli("info", str(src))
    assert text.returncode == 0, text.stderr
    assert "MS-Vid2Vid-XL UNet, modelscope format" in text.stdout and f"{parameters:,} in" in text.stdout
    assert "block_channels=[32, 64, 64, 64], head_dim=16, the rest as released" in text.stdout
    report = json.loads(cli("info", str(dst), "--json").stdout)
    assert report["variant"] == "ms_vid2vid_xl" and report["dtypes"] == {"float16": parameters}
    assert report["config"]["block_channels"] == [32, 64, 64, 64]


def test_info_on_a_file_that_is_no_checkpoint(tmp_path):
    bad = tmp_path / "notes.bin"
    bad.write_text('{"not": "weights"}')
    out = cli("info", str(bad))
    assert out.returncode == 1 and out.stderr.startswith("error: notes.bin") and not out.stdout


def test_estimate_needs_no_torch_and_gives_advice():
    code = ("import sys\nfrom i2vgen_core.__main__ import main\n"
            "status = main(['estimate', '--frames', '16', '--free', '4'])\n"
            "print('STATUS', status, 'TORCH', 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.rstrip().endswith("STATUS 0 TORCH False"), out.stdout + out.stderr
    assert out.stdout.startswith("Estimated peak memory on the GPU: ")
    assert "only 4.0 GiB is free" in out.stdout and "To fit:" in out.stdout


@pytest.mark.parametrize("old, command", [("convert", "convert"), ("demo_weights", "demo-weights"),
                                          ("encoder_files", "split-encoders")])
def test_old_module_paths_run_the_new_command(old, command):
    out = cli("--help", module=f"i2vgen_core.{old}")
    assert out.returncode == 0, out.stderr
    assert out.stderr == f"moved: python -m i2vgen_core {command} --help (was python -m i2vgen_core.{old})\n"
    assert out.stdout.startswith(f"usage: python -m i2vgen_core {command} ")
    assert cli(module=f"i2vgen_core.{old}").returncode == 2  # the command's own usage error passes through


def test_old_convert_path_still_converts(tiny_pth, tmp_path):
    dst = tmp_path / "old.safetensors"
    out = cli(str(tiny_pth[0]), str(dst), module="i2vgen_core.convert")
    assert out.returncode == 0, out.stderr
    assert out.stderr.startswith("moved: python -m i2vgen_core convert ") and dst.is_file()


def test_old_module_names_point_imports_to_the_new_modules():
    import i2vgen_core.convert as old  # importing the shim itself is harmless (tools walk packages)

    assert not hasattr(old, "__all__")
    with pytest.raises(ImportError, match=r"from i2vgen_core\.weights\.convert import convert"):
        from i2vgen_core.convert import convert  # noqa: F401
    with pytest.raises(ImportError, match=r"i2vgen_core\.weights\.demo"):
        from i2vgen_core.demo_weights import demo_unet  # noqa: F401
    with pytest.raises(ImportError, match=r"i2vgen_core\.weights\.encoder_files"):
        from i2vgen_core.encoder_files import split_release_file  # noqa: F401
