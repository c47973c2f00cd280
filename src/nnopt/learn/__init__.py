"""Learning with less supervision: self-supervised pre-training and few-label fine-tuning
(``selfsup``). The noisy-label methods are training options (``nnopt.train``: losses,
co-teaching, ELR, the clean_labels step), since every fit() may need them."""

from nnopt.learn import selfsup  # noqa: F401  (registration)
