"""Self-supervised pre-training (SimCLR, SimSiam, masked/denoising auto-encoding) and learning
from few labels (linear probe, fine-tuning), with the embedding metrics (k-NN, collapse)."""
