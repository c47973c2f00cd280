"""nnopt: optimize neural networks and measure, honestly, what each change did."""

import os as _os

__version__ = "0.1.0"

# ONNX Runtime (1.32 on Linux) writes a telemetry database under ~/.cache at import unless this
# is set before it loads; nnopt writes nothing outside the folders it is given. A user who
# set the variable keeps their value.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
