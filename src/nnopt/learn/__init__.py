"""Learning with less supervision, or with other learners: self-supervised pre-training and
few-label fine-tuning (``selfsup``), and hybrids of network features with a classical
classifier (``classical_head``). The noisy-label methods are training options
(``nnopt.train``: losses, co-teaching, ELR, the clean_labels step), since every fit() may need
them."""
