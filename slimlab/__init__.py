"""slimlab: make deep models cheaper to store, train, align and run.

Each system family lives in its own subpackage (``slimlab.ckpt``, ``slimlab.align``, ...);
method-agnostic pieces live in ``slimlab.core``.
"""

__version__ = "0.1.0"

from slimlab.core.errors import SlimlabError

__all__ = ["SlimlabError", "__version__"]
