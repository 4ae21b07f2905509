"""Fingerprints of what the shipped workflows render in a real ComfyUI: one SHA-256 of the decoded frames per output.

    python bench/workflow_fingerprint.py --comfyui /work/ComfyUI > after.txt
    python bench/workflow_fingerprint.py --comfyui /work/ComfyUI --pack ../before-checkout > before.txt
    diff before.txt after.txt      # nothing printed = every workflow's frames are bit-identical

Each API workflow in workflows/api runs smoke-sized (``headless_api.py --smoke --seed 7``) on the CPU with the demo
weights (I2VGEN_DEMO_MODELS, written on first use), on a server that loads only the pack at ``--pack``, started with
that checkout's own test harness. Frames are hashed after decoding, because an mp4's bytes also hold encoder metadata
that changes from run to run while the pictures do not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

# run in ComfyUI's Python (it has PyAV and Pillow): a digest of each file's decoded pixels
DECODE = r"""
import hashlib, json, sys
from pathlib import Path
out = {}
for name in sys.argv[1:]:
    p, h = Path(name), hashlib.sha256()
    if p.suffix.lower() in (".mp4", ".webm", ".mov", ".mkv", ".gif"):
        import av
        with av.open(str(p)) as box:
            n = 0
            for frame in box.decode(video=0):
                h.update(frame.to_ndarray(format="rgb24").tobytes()); n += 1
        out[p.name] = [n, h.hexdigest()[:24]]
    else:
        from PIL import Image
        with Image.open(p) as im:
            h.update(im.convert("RGBA").tobytes()); out[p.name] = [list(im.size), h.hexdigest()[:24]]
print(json.dumps(out))
"""


def main(argv: list[str] | None = None) -> int:
    """Print ``workflow/output  frames  digest`` lines."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comfyui", type=Path, required=True, help="a ComfyUI made by ../shared/tools/comfyui_env.sh")
    ap.add_argument("--pack", type=Path, default=HERE, help="the checkout to run (default: this one)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    pack = args.pack.resolve()
    os.environ.setdefault("COMFYUI_PATH", str(args.comfyui.resolve()))
    os.environ.setdefault("COMFYUI_PYTHON", str(args.comfyui.resolve() / ".venv" / "bin" / "python"))
    sys.path.insert(0, str(pack / "tests" / "comfyui"))
    sys.path.insert(0, str(pack))
    from conftest import start_server, stop_server  # noqa: PLC0415 - that checkout's harness

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "server")
        try:
            url = server.client.base
            for workflow in sorted((pack / "workflows" / "api").glob("*.api.json")):
                out = Path(tmp) / "out" / workflow.name.split(".")[0]
                run = subprocess.run([sys.executable, str(pack / "workflows" / "headless_api.py"), str(workflow),
                                      "--server", url, "--smoke", "--seed", str(args.seed), "--out", str(out),
                                      "--quiet"], capture_output=True, text=True, timeout=1800)
                if run.returncode:
                    raise SystemExit(f"{workflow.name} failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
                files = sorted(str(p) for p in out.rglob("*") if p.is_file())
                decoded = json.loads(subprocess.run([str(server.python), "-c", DECODE, *files], check=True,
                                                    capture_output=True, text=True).stdout)
                for name, (size, digest) in sorted(decoded.items()):
                    # the file name's counter (_00001_) depends on what ran before; the kind and order do not
                    stem = "_".join(part for part in Path(name).stem.split("_") if not part.isdigit())
                    results.append(f"{workflow.name.split('.')[0]}/{stem}{Path(name).suffix}  {size}  {digest}")
        finally:
            stop_server(server)
    print("\n".join(results))
    print(f"{len(results)} outputs of {pack}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
