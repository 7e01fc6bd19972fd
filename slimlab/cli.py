"""``slimlab <family> <command>``: one explicit dispatch table.

Each entry names the function that runs the command; it is imported only when that command runs, so
``slimlab --help`` stays fast. A command function takes the remaining argv and returns an exit status.
"""

from __future__ import annotations

import importlib
import sys
from typing import NamedTuple, Sequence

from slimlab import __version__
from slimlab.core.errors import SlimlabError


class Command(NamedTuple):
    family: str
    name: str
    target: str  # "module:function"
    summary: str


COMMANDS: tuple[Command, ...] = (
    Command("ckpt", "compress", "slimlab.ckpt.cli:compress_command",
            "ExCP: compress one checkpoint (HF folder or torch file) against a reference, or losslessly"),
    Command("ckpt", "decompress", "slimlab.ckpt.cli:decompress_command",
            "ExCP: rebuild a normal HF / torch checkpoint folder from a .excp file or chain"),
    Command("ckpt", "info", "slimlab.ckpt.cli:info_command",
            "ExCP: show tensors, sizes, bits/param and settings of a .excp file or chain"),
    Command("ckpt", "chain", "slimlab.ckpt.cli:chain_command",
            "ExCP: compress a series of checkpoints (e.g. checkpoint-*/) into a chain with keyframes"),
    Command("ckpt", "import-official", "slimlab.ckpt.cli:import_official_command",
            "ExCP: rebuild a normal checkpoint from the official code's compressed.pt and its reference"),
    Command("align", "iterate", "slimlab.align.cli:iterate_command",
            "iREPO: sample K responses, annotate, regress on soft preferences, for several rounds"),
    Command("align", "train", "slimlab.align.cli:train_command",
            "iREPO (or DPO/IPO/soft DPO): one round on a prompt/chosen/rejected JSONL with soft labels"),
    Command("align", "sample", "slimlab.align.cli:sample_command", "iREPO: sample K responses per prompt"),
    Command("align", "label", "slimlab.align.cli:label_command", "iREPO: annotate samples into soft-labelled pairs"),
    Command("align", "pretrain", "slimlab.align.cli:pretrain_command",
            "iREPO: build and pre-train a small Llama causal LM on offline text"),
    Command("par", "train", "slimlab.par.cli:train_command",
            "AAP: train a pedestrian-attribute model (attribute aware pooling or a baseline head)"),
    Command("par", "eval", "slimlab.par.cli:eval_command",
            "AAP: mA, accuracy, precision, recall, F1 of a PAR checkpoint on its test split"),
    Command("par", "predict", "slimlab.par.cli:predict_command",
            "AAP: print each image's pedestrian attributes with probabilities"),
    Command("gan", "train-teacher", "slimlab.gan.cli:train_teacher_command",
            "Portable GANs: train a pix2pix (paired) or CycleGAN (unpaired) teacher generator"),
    Command("gan", "distill", "slimlab.gan.cli:distill_command",
            "Portable GANs: distil a thin student generator with a student discriminator"),
    Command("gan", "translate", "slimlab.gan.cli:translate_command",
            "Portable GANs: translate a folder of images with a generator file"),
    Command("gan", "export-onnx", "slimlab.gan.cli:export_onnx_command",
            "Portable GANs: export a generator to ONNX (checked against onnxruntime)"),
    Command("gan", "eval", "slimlab.gan.cli_eval:eval_command",
            "Portable GANs: PSNR / SSIM / KID / FID of a generator on a test split (FCN-style score for label maps)"),
    Command("sam", "segment", "slimlab.sam.cli:segment_command",
            "TinySAM: segment an image from points / a box, or everything (grid or hierarchical)"),
    Command("sam", "distill", "slimlab.sam.cli:distill_command",
            "TinySAM: full-stage distillation with online hard prompt sampling"),
    Command("sam", "quantize", "slimlab.sam.cli_quantize:quantize_command",
            "TinySAM: W8A8 post-training quantization with calibrated scales"),
    Command("sam", "export-onnx", "slimlab.sam.cli:export_onnx_command",
            "TinySAM: export encoder + prompt decoder to ONNX, checked with onnxruntime"),
    Command("sam", "eval", "slimlab.sam.cli_eval:eval_command",
            "TinySAM: prompted mIoU (point or box) of a checkpoint on ShapesSA or a COCO / SA-1B folder"),
    Command("demo", "", "slimlab.demo:demo_command",
            "run every system on built-in data and write runs/demo/report.md"),
)


def usage() -> str:
    lines = [f"slimlab {__version__}: make deep models cheaper to store, train, align and run.", "",
             "usage: slimlab <family> <command> [options]   (slimlab <family> <command> --help for options)", ""]
    width = max(len(f"{c.family} {c.name}".strip()) for c in COMMANDS)
    for command in COMMANDS:
        lines.append(f"  {f'{command.family} {command.name}'.strip():<{width}}  {command.summary}")
    return "\n".join(lines)


def find_command(argv: Sequence[str]) -> tuple[Command, list[str]]:
    families = {c.family for c in COMMANDS}
    if not argv or argv[0] not in families:
        raise SlimlabError(f"unknown family '{argv[0]}'\n\n{usage()}" if argv else usage())
    family_commands = [c for c in COMMANDS if c.family == argv[0]]
    if len(family_commands) == 1 and family_commands[0].name == "":
        return family_commands[0], list(argv[1:])
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        raise SlimlabError(family_help(argv[0]))
    for command in family_commands:
        if command.name == argv[1]:
            return command, list(argv[2:])
    raise SlimlabError(f"unknown command '{argv[0]} {argv[1]}'; "
                       f"known: {', '.join(c.name for c in family_commands)}")


def family_help(family: str) -> str:
    names = "\n".join(f"  {c.name:<12} {c.summary}" for c in COMMANDS if c.family == family)
    return f"slimlab {family} <command>:\n{names}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if len(argv) == 2 and argv[1] in ("-h", "--help") and any(c.family == argv[0] and c.name for c in COMMANDS):
        print(family_help(argv[0]))  # asked for: the family's commands on stdout, exit 0
        return 0
    if argv[0] == "--version":
        print(__version__)
        return 0
    try:
        command, rest = find_command(argv)
        module_name, function_name = command.target.split(":")
        function = getattr(importlib.import_module(module_name), function_name)
        return int(function(rest) or 0)
    except SlimlabError as error:
        print(f"slimlab: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # unreadable input, missing folder, full disk met outside an atomic write
        where = f"{error.filename}: " if error.filename else ""
        print(f"slimlab: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("slimlab: interrupted; outputs are written atomically, so nothing partial was left", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
