"""TinySAM: efficient Segment Anything (checkpoint-compatible models, distillation, PTQ, hierarchical everything)."""

from slimlab.sam.build import (
    build_model,
    build_sam_vit_b,
    build_tinysam,
    load_checkpoint,
)
from slimlab.sam.predictor import SamPredictor

__all__ = ["SamPredictor", "build_model", "build_sam_vit_b", "build_tinysam", "load_checkpoint"]
