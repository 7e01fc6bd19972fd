"""TinySAM: efficient Segment Anything (checkpoint-compatible models, distillation, PTQ, hierarchical everything)."""

from slimlab.sam.build import build_model, build_sam_vit_b, build_tinysam, load_checkpoint
from slimlab.sam.predictor import SamPredictor  # noqa: E402

__all__ = ["build_model", "build_sam_vit_b", "build_tinysam", "load_checkpoint", "SamPredictor"]
