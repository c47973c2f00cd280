"""Report section for weight sharing: codebook sizes per layer and the encoded file."""

from __future__ import annotations

from pathlib import Path

from nnopt.report.model import StageRecord
from nnopt.report.render import Doc, fmt, register_section


@register_section
def weight_sharing_section(doc: Doc, labels: list[str], records: list[StageRecord],
                           figs: Path) -> None:
    rows = []
    for lab, s in zip(labels, records):
        for name, r in (s.details.get("weight_sharing") or {}).items():
            rows.append([lab, name, str(r["bits"]), str(r["clusters"]), f"{r['weights']:,}",
                         fmt("compressed_size_bytes", s.metrics.get("compressed_size_bytes"))])
    if rows:
        doc.h2("Weight sharing")
        doc.p("Each layer's non-zero weights share a k-means codebook of at most 2^bits values "
              "(centroids fine-tuned). The stage's compressed size is its Deep Compression file "
              "(models/STAGE/model.nnc: codebooks, Huffman-coded indices and gaps between "
              "non-zeros), which decodes back to exactly the measured model.")
        doc.table(["stage", "layer", "bits", "shared values", "weights coded", "file"], rows)
