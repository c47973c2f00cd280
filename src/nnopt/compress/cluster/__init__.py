"""Weight sharing (k-means codebooks) and the Deep Compression file format (Huffman coding)."""
