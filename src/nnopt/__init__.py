"""nnopt: optimize neural networks and measure, honestly, what each change did.

Importing nnopt changes nothing global: no environment variable, no matplotlib backend, no
torch setting (see README, "Architecture")."""

from nnopt.core.version import __version__

__all__ = ["__version__"]
