"""The manifest: every built-in module that registers something, in one place.

The registry imports this module (by name) before its first lookup, so every step, model,
dataset, metric, task, report section, saved-model format and transform is registered whatever
a caller imported first. A new technique adds its modules here; a separate package registers
through the ``nnopt.plugins`` entry-point group instead. The order below is the order of the
report's sections.
"""

# ruff: noqa: F401, I001  (the order is meaningful: it is the order of the report's sections)
# floor 2: datasets and models
from nnopt.data import (arrays, cifar10, digits, hf_datasets, idx, imagefolder, mnist1d,
                        sentences, tabular)
from nnopt.models import (capsnet, cnn, cnn1d, convattn, darts, deployed, factory, hf, lenet,
                          minilm, mlp, resnet, timm_models, vit, wann)

# floor 3: training tasks
from nnopt.train import task

# floor 4: metrics (their order is the order of the report's columns)
from nnopt.measure import quality, efficiency, latency, latency_table

# floor 5: techniques (steps, metrics, tasks, formats, transforms, report sections)
from nnopt.compress.cluster import codec
from nnopt.compress.cluster import report as cluster_report
from nnopt.compress.cluster import step as cluster_step
from nnopt.compress.distill import report as distill_report
from nnopt.compress.distill import step as distill_step
from nnopt.compress import fuse
from nnopt.compress.lowrank import report as lowrank_report
from nnopt.compress.lowrank import step as lowrank_step
from nnopt.compress.prune import lottery
from nnopt.compress.prune import report as prune_report
from nnopt.compress.prune import step as prune_step
from nnopt.compress.quantize import (
    cast,
    executorch,
    export,
    onnx_model,
    openvino,
    qat_step,
    torch_int8,
)
from nnopt.compress.quantize import report as quant_report
from nnopt.compress.quantize import step as quant_step
from nnopt.search import darts as darts_search
from nnopt.search import executors, nas, strategies
from nnopt.search import report as search_report
from nnopt.search import wann as wann_search
from nnopt.search import wann_report
from nnopt.learn import classical_head
from nnopt.learn.selfsup import finetune, pretrain
from nnopt.learn.selfsup import metrics as ssl_metrics
from nnopt.learn.selfsup import report as ssl_report
from nnopt.learn.noisy import clean_labels, coteaching, elr
from nnopt.learn.noisy import report as noisy_report
from nnopt.learn import train_step
from nnopt.trust.calibration import registered, scaling
from nnopt.trust.calibration import report as calibration_report
from nnopt.trust.calibration import step as calibration_step
from nnopt.trust import ood_metric
from nnopt.trust import report as trust_report
from nnopt.trust.uncertainty import bayes, ensemble, laplace, mc_dropout, mc_step
from nnopt.trust.robustness import corruption_metric, corruptions, training
from nnopt.trust.robustness import metric as robust_metric
from nnopt.trust.robustness import report as robustness_report

# the top: the commands of `nnopt` (they import the runner, the sweep and the report)
from nnopt import commands
