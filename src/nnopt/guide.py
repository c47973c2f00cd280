"""What `nnopt explain STEP` says besides the config: when the method pays off, what it costs,
and the paper it comes from. Data only; a plugin's step says the same through its registration
(``STEPS.register(..., guide={"pays_off": ..., "costs": ..., "paper": ...})``)."""

from __future__ import annotations

GUIDE: dict[str, dict[str, str]] = {
    "train": {
        "pays_off": "always the first stage: every other stage is judged against it",
        "costs": "training time; choose epochs by the validation curve in the report",
        "paper": "Loshchilov & Hutter 2019, Decoupled Weight Decay Regularization (AdamW)"},
    "prune": {
        "pays_off": "channel pruning: on every runtime, in proportion to the MACs removed when "
                    "the layers are compute-bound; unstructured/N:M: in file size (compressed), "
                    "and in latency only where a sparse kernel exists (the pre-flight says)",
        "costs": "accuracy (recovered by fine-tuning); unstructured sparsity buys no speed on "
                 "dense kernels",
        "paper": "Han et al. 2015 (magnitude); Zhu & Gupta 2017 (gradual); Fang et al. 2023, "
                 "DepGraph (channels); Mishra et al. 2021 (2:4)"},
    "quantize": {
        "pays_off": "int8 where the CPU has integer dot-product instructions (VNNI, AMX) and "
                    "the layers are large; the runtime change alone (PyTorch -> ONNX Runtime, "
                    "OpenVINO or ExecuTorch) often pays more on small models, and which runtime "
                    "wins depends on the model and the target: auto times them all, and the "
                    "report keeps the runtime effect apart from the precision effect",
        "costs": "up to ~1 pt accuracy (checked against the tolerance on validation); no "
                 "speed on CPUs without VNNI, where auto keeps fp32; a few seconds per "
                 "ExecuTorch program (one per target batch) and per NNCF quantization",
        "paper": "Jacob et al. 2018, Quantization and Training of Neural Networks for "
                 "Efficient Integer-Arithmetic-Only Inference"},
    "qat": {
        "pays_off": "at 4 bits and below, or when post-training int8 loses too much accuracy",
        "costs": "a training run with fake quantization (slower epochs)",
        "paper": "Jacob et al. 2018; Esser et al. 2020, LSQ"},
    "distill": {
        "pays_off": "a smaller student than the teacher, trained to a better accuracy than "
                    "the same student alone",
        "costs": "a teacher forward per batch during training",
        "paper": "Hinton et al. 2015, Distilling the Knowledge in a Neural Network; Romero et "
                 "al. 2015, FitNets; Zagoruyko & Komodakis 2017 (attention transfer)"},
    "factorize": {
        "pays_off": "large linear and conv layers whose weights have fast-decaying singular "
                    "values",
        "costs": "accuracy at low rank; small layers get slower (two matmuls)",
        "paper": "Denton et al. 2014; Kim et al. 2016 (Tucker-2)"},
    "cluster": {
        "pays_off": "file size (weight sharing + entropy coding), not latency",
        "costs": "accuracy at few clusters; decoding at load time",
        "paper": "Han et al. 2016, Deep Compression"},
    "fuse": {
        "pays_off": "PyTorch eager targets (one conv instead of conv + BN); ONNX Runtime fuses "
                    "by itself",
        "costs": "nothing: outputs are checked to stay equal",
        "paper": "Jacob et al. 2018 (BN folding)"},
    "export": {
        "pays_off": "small models on CPUs, where ONNX Runtime's fused kernels beat eager "
                    "PyTorch",
        "costs": "nothing in accuracy (outputs are checked)",
        "paper": "ONNX Runtime (Microsoft 2019)"},
    "calibrate": {
        "pays_off": "whenever confidence is used (thresholds, abstention): ECE drops, "
                    "accuracy is unchanged for temperature scaling",
        "costs": "a validation split; nothing at inference beyond one division",
        "paper": "Guo et al. 2017, On Calibration of Modern Neural Networks"},
    "mc_dropout": {
        "pays_off": "uncertainty and OOD detection from a single trained model",
        "costs": "T forward passes per prediction",
        "paper": "Gal & Ghahramani 2016, Dropout as a Bayesian Approximation"},
    "ensemble": {
        "pays_off": "the best accuracy, calibration and OOD detection of the uncertainty "
                    "methods",
        "costs": "N trainings and N forward passes",
        "paper": "Lakshminarayanan et al. 2017, Deep Ensembles"},
    "bayes": {
        "pays_off": "weight uncertainty where data is small",
        "costs": "about twice the parameters and sampling at inference",
        "paper": "Blundell et al. 2015, Weight Uncertainty in Neural Networks"},
    "laplace": {
        "pays_off": "calibrated uncertainty added after training, with no retraining",
        "costs": "a Hessian of the last layer; a probit predictive at inference",
        "paper": "Daxberger et al. 2021, Laplace Redux"},
    "lottery": {
        "pays_off": "research on trainable sparse subnetworks; sparse files",
        "costs": "several full trainings",
        "paper": "Frankle & Carbin 2019, The Lottery Ticket Hypothesis"},
    "nas": {
        "pays_off": "when the architecture family is open and latency matters on a target",
        "costs": "many short trainings (parallel on Ray)",
        "paper": "Real et al. 2019 (evolution); Akiba et al. 2019 (Optuna); Cai et al. 2019, "
                 "ProxylessNAS (latency tables)"},
    "darts": {
        "pays_off": "cell search at the cost of about one training",
        "costs": "memory for the mixed operations; the derived net is retrained",
        "paper": "Liu et al. 2019, DARTS"},
    "wann": {
        "pays_off": "studying architectures that work without weight training",
        "costs": "accuracy far below trained networks",
        "paper": "Gaier & Ha 2019, Weight Agnostic Neural Networks"},
    "clean_labels": {
        "pays_off": "training labels with more than a few percent errors",
        "costs": "cross-validated training to find the issues",
        "paper": "Northcutt et al. 2021, Confident Learning"},
    "pretrain": {
        "pays_off": "many unlabeled inputs and few labels",
        "costs": "a pre-training run longer than supervised training",
        "paper": "Chen et al. 2020, SimCLR; Chen & He 2021, SimSiam"},
    "finetune": {
        "pays_off": "after pretrain, with few labels",
        "costs": "little: a probe or a short fine-tuning",
        "paper": "Chen et al. 2020; Sohn et al. 2020, FixMatch"},
    "classical_head": {
        "pays_off": "small data, where a classical classifier on learned features generalises",
        "costs": "the classifier runs outside the ONNX graph",
        "paper": "Razavian et al. 2014, CNN Features off-the-shelf"},
}


def guide_lines(step: str, meta: dict) -> list[str]:
    """The pays-off / costs / paper lines of a step ([] when none is written)."""
    g = meta.get("guide") or GUIDE.get(step)
    if not g:
        return []
    return [f"pays off: {g['pays_off']}", f"costs: {g['costs']}", f"paper: {g['paper']}"]
