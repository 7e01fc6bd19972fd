"""Attribute-aware pooling (AAP) for pedestrian attribute recognition.

Public names: ``AttributeAwarePooling`` (the plug-in head), ``create_model``, ``attribute_metrics``,
``make_synthetic_pedestrians`` and the annotation loaders for PETA, RAP and PA-100K.
"""

from slimlab.par.metrics import attribute_metrics
from slimlab.par.model import AttributeAwarePooling, create_model

__all__ = ["AttributeAwarePooling", "attribute_metrics", "create_model"]
