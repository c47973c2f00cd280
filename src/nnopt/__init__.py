"""nnopt: optimize neural networks and measure, honestly, what each change did."""

__version__ = "0.1.0"
