"""``slimlab ckpt compress | decompress | info | chain | import-official``."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from pathlib import Path

from slimlab.ckpt.chain import INDEX_FILE, CheckpointChain, compress_checkpoint, decompress_checkpoint
from slimlab.ckpt.codec import ExcpCodec, bits_per_parameter, ratio
from slimlab.ckpt.container import ContainerReader
from slimlab.ckpt.decode import malformed_entry
from slimlab.ckpt.state import read_checkpoint
from slimlab.core.errors import SlimlabError
from slimlab.core.io import read_json, refuse_output_over_inputs


def _codec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", default="excp", choices=["excp", "excp-ref", "lossless"],
                        help="excp (default), excp-ref (official semantics + xz) or lossless (bit-exact)")
    parser.add_argument("--alpha", type=float, default=5e-5, help="weight shrinking strength (default 5e-5)")
    parser.add_argument("--beta", type=float, default=2.0, help="momentum kept where |m| > beta*mean|m| (default 2)")
    parser.add_argument("--bits", type=int, default=4, help="index bits for residual, m and v (default 4)")
    parser.add_argument("--v-domain", default="log", choices=["log", "linear-fp16"])
    parser.add_argument("--score", default="excp", choices=["excp", "adam", "curvature"],
                        help="excp: the paper's per-tensor threshold (default); adam / curvature: keep the top "
                             "--keep-fraction of |dW|*sqrt(v) / |dW|*v^(1/4) over the whole checkpoint")
    parser.add_argument("--keep-fraction", type=float, default=0.1,
                        help="budget of --score adam / curvature: fraction of residual entries kept (default 0.1)")
    parser.add_argument("--delta-v", action="store_true",
                        help="code log(v) against the parent's decoded v where the parent kept one (ablation)")
    parser.add_argument("--keyframe-every", type=int, default=10, help="chain: a keyframe every K checkpoints")


def _codec(arguments) -> ExcpCodec:
    return ExcpCodec(mode=arguments.mode, alpha=arguments.alpha, beta=arguments.beta, bits=(arguments.bits,) * 3,
                     v_domain=arguments.v_domain, score=arguments.score, keep_fraction=arguments.keep_fraction,
                     keyframe_every=arguments.keyframe_every, delta_v=arguments.delta_v)


def _param_names(path: str | None) -> list[str] | None:
    if path is None:
        return None
    names = read_json(path, list, "a JSON list of parameter names")
    if not all(isinstance(name, str) for name in names):
        raise SlimlabError(f"{path}: expected a JSON list of parameter names (strings), found other values")
    return names


def compress_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slimlab ckpt compress",
                                     description="Compress one checkpoint (HF folder or torch file) into a .excp file.")
    parser.add_argument("checkpoint", help="HF Trainer checkpoint folder or torch.save file")
    parser.add_argument("--out", required=True, help="output .excp file")
    parser.add_argument("--ref", help="parent .excp file (its lineage must sit beside it); omit for a keyframe")
    parser.add_argument("--step", type=int, help="training step to record (default: from trainer_state.json)")
    parser.add_argument("--param-names", help="JSON list of parameter names in optimizer order")
    _codec_arguments(parser)
    arguments = parser.parse_args(argv)
    if arguments.out.endswith(("/", os.sep)) or Path(arguments.out).is_dir():
        raise SlimlabError(f"{arguments.out}: names a folder; --out is the .excp file to write")
    result = compress_checkpoint(arguments.checkpoint, arguments.out, arguments.ref, _codec(arguments),
                                 _param_names(arguments.param_names), arguments.step)
    print(f"{arguments.out}: {result.raw_bytes / 1e6:.2f} MB -> {result.coded_bytes / 1e6:.3f} MB "
          f"({ratio(result.raw_bytes, result.coded_bytes):.1f}x) in {result.seconds:.2f} s")
    return 0


def decompress_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slimlab ckpt decompress",
                                     description="Rebuild a normal checkpoint from a .excp file or a chain folder.")
    parser.add_argument("source", help=".excp file or chain folder (with chain.json)")
    parser.add_argument("--out", required=True, help="output folder (hf) or file (torch)")
    parser.add_argument("--step", type=int, help="chain: which step (default: the latest)")
    parser.add_argument("--format", choices=["hf", "torch"], help="output layout (default: as compressed)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    arguments = parser.parse_args(argv)
    out = decompress_checkpoint(arguments.source, arguments.out, arguments.step, arguments.format, arguments.overwrite)
    print(f"wrote {out}")
    return 0


def import_official_command(argv: list[str]) -> int:
    from slimlab.ckpt.official import import_official

    parser = argparse.ArgumentParser(
        prog="slimlab ckpt import-official",
        description="Rebuild a normal checkpoint from the official ExCP compressed.pt and its reference checkpoint.")
    parser.add_argument("compressed", help="compressed.pt written by the official compress_pythia.py")
    parser.add_argument("--ref", required=True, help="the checkpoint it was coded against (HF folder or torch file)")
    parser.add_argument("--out", required=True, help="output folder (hf) or file (torch), as the reference")
    parser.add_argument("--step", type=int, help="training step of the coded checkpoint (default: the reference's)")
    parser.add_argument("--param-names", help="JSON list of parameter names in optimizer order")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    arguments = parser.parse_args(argv)
    summary = import_official(arguments.compressed, arguments.ref, arguments.out, arguments.step,
                              _param_names(arguments.param_names), arguments.overwrite)
    print(f"wrote {summary.out}: {summary.tensors} tensors rebuilt, {summary.copied} kept from the reference, "
          f"{summary.first_moments_zeroed} first-moment entries zeroed where the second moment decoded to 0")
    return 0


def info_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slimlab ckpt info", description="Describe a .excp file or chain folder.")
    parser.add_argument("source", help=".excp file or chain folder")
    parser.add_argument("--tensors", action="store_true", help="list every tensor")
    arguments = parser.parse_args(argv)
    source = Path(arguments.source)
    files = [source / entry["file"] for entry in CheckpointChain(source).entries] if source.is_dir() else [source]
    if not files:
        raise SlimlabError(f"{source}: no chain here (no {INDEX_FILE} with entries)")
    for path in files:
        with ContainerReader(path) as reader, malformed_entry(str(path)):
            print(describe(reader, arguments.tensors or len(files) == 1))
    return 0


def describe(reader: ContainerReader, with_tensors: bool) -> str:
    header = reader.header
    parameters = sum(math.prod(entry["shape"]) for entry in header["tensors"].values())
    coded = reader.size
    kind = "keyframe" if header["is_keyframe"] else f"delta (depth {header['depth']}, parent {header['parent_id'][:12]})"
    lines = [f"{reader.path}: step {header.get('step')}, {kind}, id {reader.content_id[:12]}",
             f"  codec: {json.dumps(header['codec'])}",
             f"  {parameters:,} parameters, raw {header['raw_bytes'] / 1e6:.3f} MB -> {coded / 1e6:.4f} MB "
             f"({ratio(header['raw_bytes'], coded):.1f}x, {bits_per_parameter(coded, parameters):.3f} bits/param)",
             "  bytes by stream: " + ", ".join(f"{kind}={size:,}" for kind, size in header["stream_bytes_by_kind"].items())]
    if with_tensors:
        moments = {record["moments"]["tensor"]: record["moments"] for record in
                   (header["optimizer"] or {}).get("state", {}).values()
                   if record.get("moments", {}).get("coding") == "excp" and "tensor" in record["moments"]}
        lines.append(f"  {'tensor':<44} {'shape':<14} {'dtype':<9} {'coding':<9} {'residual kept':>13} {'moments kept':>12}")
        for name, entry in header["tensors"].items():
            count = max(1, math.prod(entry["shape"]))
            kept = f"{100 * entry['kept'] / count:.2f}%" if "kept" in entry else ""
            kept_moments = f"{100 * moments[name]['kept'] / count:.2f}%" if name in moments else ""
            lines.append(f"  {name:<44} {str(tuple(entry['shape'])):<14} {entry['dtype']:<9} {entry['coding']:<9} "
                         f"{kept:>13} {kept_moments:>12}")
    return "\n".join(lines)


def chain_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slimlab ckpt chain",
                                     description="Compress checkpoints in step order into a chain folder.")
    parser.add_argument("checkpoints", nargs="+", help="checkpoint folders/files, or one folder holding checkpoint-*/")
    parser.add_argument("--out", required=True, help="chain folder (created; appended to if it exists)")
    _codec_arguments(parser)
    arguments = parser.parse_args(argv)
    sources = [Path(path) for path in arguments.checkpoints]
    if len(sources) == 1 and sources[0].is_dir() and list(sources[0].glob("checkpoint-*")):
        sources = sorted(sources[0].glob("checkpoint-*"), key=_step_of)
    refuse_output_over_inputs(arguments.out, sources)
    missing = [str(source) for source in sources if not source.exists()]
    if missing:
        raise SlimlabError(f"no such checkpoint: {', '.join(missing)}; nothing was written")
    if Path(arguments.out).exists() and not Path(arguments.out).is_dir():
        raise SlimlabError(f"{arguments.out}: exists and is not a chain folder")
    chain = CheckpointChain(arguments.out, _codec(arguments))
    # all or nothing: a failure removes the files this run appended and restores chain.json
    with chain.transaction():
        for position, source in enumerate(sources):
            state = read_checkpoint(source)
            # a Trainer's checkpoint-<step> name; else the step the file records; else its position on the command line
            step = _step_of(source) if _step_of(source) >= 0 else state.step if state.step is not None else position
            try:
                result = chain.append(state, step)
            except SlimlabError as error:
                raise SlimlabError(f"{source}: not appended to the chain: {error}; nothing was written") from error
            print(f"{source} -> step {step}: {ratio(result.raw_bytes, result.coded_bytes):.1f}x in "
                  f"{result.seconds:.2f} s")
    return 0


def _step_of(path: Path) -> int:
    match = re.fullmatch(r"checkpoint-(\d+)", path.name)
    return int(match.group(1)) if match else -1
