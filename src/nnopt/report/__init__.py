"""Reports: data (Report) and its renderings (JSON, Markdown, HTML, figures)."""

from nnopt.report.compare import write_comparison
from nnopt.report.model import Report, StageRecord, load_report
from nnopt.report.render import write_report

__all__ = ["Report", "StageRecord", "load_report", "write_comparison", "write_report"]
