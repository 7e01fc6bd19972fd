"""ExCP (Li et al., ICML 2024): extreme compression of training checkpoints (weights + Adam moments).

Public API:
    ExcpCodec                  - per-checkpoint encoder / decoder (modes excp, excp-ref, lossless)
    read_checkpoint            - HF Trainer folder or torch.save file -> CheckpointState
    compress_checkpoint        - one checkpoint -> one .excp file (against a reference or as a keyframe)
    decompress_checkpoint      - .excp file (+ its lineage) -> HF or torch checkpoint folder
    CheckpointChain            - a folder of .excp files with keyframes every K checkpoints
    save_compressed / load_compressed - plain PyTorch training loops
    ExcpTrainerCallback        - transformers.Trainer integration
"""

from slimlab.ckpt.codec import ExcpCodec
from slimlab.ckpt.state import CheckpointState, OptimizerState, read_checkpoint
from slimlab.ckpt.chain import CheckpointChain, compress_checkpoint, decompress_checkpoint
from slimlab.ckpt.training import load_compressed, save_compressed

__all__ = ["ExcpCodec", "CheckpointState", "OptimizerState", "read_checkpoint", "CheckpointChain",
           "compress_checkpoint", "decompress_checkpoint", "save_compressed", "load_compressed"]
