"""``slimlab gan train-teacher|distill|translate|export-onnx``.

Recipe commands take flags for the common fields and ``key=value`` for every other field of their config
(or ``--config`` YAML); ``--data builtin:edges2photo`` (or sr4, labels2texture, shapes2stripes) uses a built-in
offline task.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing

from slimlab.core.config import load_config
from slimlab.core.runtime import select_device
from slimlab.gan.config import DistillConfig, TeacherConfig
from slimlab.gan.networks import GeneratorSpec


def _recipe_parser(prog: str, description: str, config_class: type) -> argparse.ArgumentParser:
    config_name = config_class.__name__
    parser = argparse.ArgumentParser(prog=f"slimlab gan {prog}", description=description,
                                     epilog=config_fields(config_class),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help=f"YAML file of {config_name} fields")
    parser.add_argument("--data", help="paired: a folder with A/ + B/ (same file names) or of side-by-side A|B images; "
                        "unpaired: a folder with trainA/ + trainB/; or builtin:<task>")
    parser.add_argument("--mode", choices=["paired", "unpaired"])
    parser.add_argument("--out", help="run folder")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--device", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:1")
    parser.add_argument("overrides", nargs="*", help=f"key=value overrides of {config_name} fields (e.g. lr=1e-4)")
    return parser


def config_fields(config_class: type) -> str:
    """One line per config field (name, default, allowed values): what ``key=value`` overrides can set."""
    hints = typing.get_type_hints(config_class)
    lines = [f"{config_class.__name__} fields (key=value; default):"]
    for field in dataclasses.fields(config_class):
        default = "(required)" if field.default is dataclasses.MISSING else repr(field.default)
        choices = typing.get_args(hints[field.name]) if typing.get_origin(hints[field.name]) is typing.Literal else ()
        allowed = f"  ({' | '.join(c or repr(c) for c in choices)})" if choices else ""
        lines.append(f"  {field.name:<22} {default}{allowed}")
    return "\n".join(lines)


def train_teacher_command(argv: list[str]) -> int:
    from slimlab.gan.recipes.teacher import train_teacher

    parser = _recipe_parser("train-teacher", "train a pix2pix (paired) or CycleGAN (unpaired) generator",
                            TeacherConfig)
    parser.add_argument("--ngf", type=int, help="generator width")
    arguments = parser.parse_intermixed_args(argv)  # key=value overrides may sit between options
    cfg = load_config(TeacherConfig, arguments.config, arguments.overrides, data=arguments.data, mode=arguments.mode,
                      out_dir=arguments.out, steps=arguments.steps, device=arguments.device, ngf=arguments.ngf)
    print(f"teacher written to {train_teacher(cfg)}")
    return 0


def distill_command(argv: list[str]) -> int:
    from slimlab.gan.recipes.distill import distill

    parser = _recipe_parser("distill", "distil a portable student generator with a student discriminator",
                            DistillConfig)
    parser.add_argument("--teacher", help="teacher generator file (G.pt, or G_AB.pt for unpaired)")
    parser.add_argument("--teacher-d", help="teacher discriminator file (default: D.pt / D_B.pt next to --teacher)")
    parser.add_argument("--ratio", type=float, help="student width / teacher width")
    parser.add_argument("--no-student-d", action="store_true", help="ablation: pixel + feature distillation only")
    parser.add_argument("--teacher-kind", choices=["resnet", "unet"],
                        help="for a plain state dict teacher (e.g. pytorch-CycleGAN-and-pix2pix latest_net_G.pth) only")
    parser.add_argument("--teacher-ngf", type=int, help="plain state dict teacher: generator width (default 64)")
    parser.add_argument("--teacher-n-blocks", type=int, help="plain state dict resnet teacher: blocks (default 9)")
    parser.add_argument("--teacher-num-downs", type=int, help="plain state dict unet teacher: depth (default 8)")
    arguments = parser.parse_intermixed_args(argv)  # key=value overrides may sit between options
    cfg = load_config(DistillConfig, arguments.config, arguments.overrides, data=arguments.data, mode=arguments.mode,
                      out_dir=arguments.out, steps=arguments.steps, device=arguments.device,
                      teacher=arguments.teacher, teacher_d=arguments.teacher_d, ratio=arguments.ratio,
                      student_discriminator=False if arguments.no_student_d else None,
                      teacher_kind=arguments.teacher_kind, teacher_ngf=arguments.teacher_ngf,
                      teacher_n_blocks=arguments.teacher_n_blocks, teacher_num_downs=arguments.teacher_num_downs)
    print(f"student written to {distill(cfg)}")
    return 0


def _architecture_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=["resnet", "unet"],
                        help="for a plain state dict (e.g. pytorch-CycleGAN-and-pix2pix latest_net_G.pth) only")
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--n-blocks", type=int, default=9)
    parser.add_argument("--num-downs", type=int, default=8)


def _spec(arguments) -> GeneratorSpec | None:
    if arguments.kind is None:
        return None
    return GeneratorSpec(kind=arguments.kind, ngf=arguments.ngf, n_blocks=arguments.n_blocks,
                         num_downs=arguments.num_downs)


def translate_command(argv: list[str]) -> int:
    from slimlab.gan.translate import translate_folder

    parser = argparse.ArgumentParser(prog="slimlab gan translate", description="translate every image of a folder")
    parser.add_argument("--checkpoint", required=True, help="generator file (G.pt from train-teacher or distill)")
    parser.add_argument("input_dir")
    parser.add_argument("output_dir", help="created whole at the end; an existing folder needs --overwrite")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--device", default="auto")
    _architecture_flags(parser)
    arguments = parser.parse_args(argv)
    written = translate_folder(arguments.checkpoint, arguments.input_dir, arguments.output_dir,
                               select_device(arguments.device), arguments.overwrite, _spec(arguments))
    print(f"{len(written)} images written to {arguments.output_dir}")
    return 0


def export_onnx_command(argv: list[str]) -> int:
    from slimlab.gan.translate import export_onnx

    parser = argparse.ArgumentParser(prog="slimlab gan export-onnx", description="export a generator to ONNX")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("output", help="the .onnx file to write")
    parser.add_argument("--size", type=int, default=256, help="side of the example input (any size works later)")
    parser.add_argument("--opset", type=int, default=17)
    _architecture_flags(parser)
    arguments = parser.parse_args(argv)
    difference = export_onnx(arguments.checkpoint, arguments.output, arguments.size, arguments.opset, _spec(arguments))
    print(f"wrote {arguments.output} (max |torch - onnxruntime| = {difference:.1e})")
    return 0
