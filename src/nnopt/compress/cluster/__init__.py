"""Weight sharing (k-means codebooks) and the Deep Compression file format (Huffman coding)."""

from nnopt.compress.cluster import report, step  # noqa: F401  (registration)
