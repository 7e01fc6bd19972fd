"""``slimlab demo``: the end-to-end tour. Runs each system on built-in data and writes one report.

Each system contributes one section function ``run_demo(out_dir: Path, quick: bool) -> str`` returning
Markdown; the table below lists them explicitly, in the order the report shows them.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import time
import traceback
from pathlib import Path

import torch

from slimlab import __version__
from slimlab.core.io import atomic_write_text

SECTIONS: tuple[tuple[str, str], ...] = (
    ("ExCP: checkpoint compression", "slimlab.ckpt.demo:run_demo"),
    ("Attribute-aware pooling: pedestrian attributes", "slimlab.par.demo:run_demo"),
    ("iREPO: alignment on soft empirical preferences", "slimlab.align.demo:run_demo"),
    ("Portable GANs: distilling image translators with a student discriminator", "slimlab.gan.demo:run_demo"),
    ("TinySAM: distilled, quantized segment-anything with hierarchical everything mode", "slimlab.sam.demo:run_demo"),
)


def demo_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slimlab demo", description=__doc__)
    parser.add_argument("--out", default="runs/demo", help="folder for the report and its figures")
    parser.add_argument("--quick", action="store_true", help="smaller settings (used by the test suite)")
    parser.add_argument("--only", action="append", default=[], help="run only sections whose title contains this")
    arguments = parser.parse_args(argv)
    out_dir = Path(arguments.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"# slimlab demo report\n\nslimlab {__version__}, torch {torch.__version__}, "
             f"{platform.machine()} with {torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d %H:%M')}.\n"]
    failures = 0
    for title, target in SECTIONS:
        if arguments.only and not any(word.lower() in title.lower() for word in arguments.only):
            continue
        print(f"== {title}", flush=True)
        started = time.perf_counter()
        module_name, function_name = target.split(":")
        section_dir = out_dir / module_name.split(".")[1]
        section_dir.mkdir(parents=True, exist_ok=True)
        try:
            body = getattr(importlib.import_module(module_name), function_name)(section_dir, arguments.quick)
        except Exception:  # one failing section must not hide the others; the report says what broke
            failures += 1
            body = "**This section failed:**\n\n```\n" + traceback.format_exc() + "```\n"
        parts.append(f"## {title}\n\n{body}\n\n_{time.perf_counter() - started:.1f} s_\n")
    report = out_dir / "report.md"
    atomic_write_text(report, "\n".join(parts))
    print(f"report written to {report}")
    return 1 if failures else 0
