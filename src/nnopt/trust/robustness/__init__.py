"""Robustness: adversarial attacks (white-box, black-box, transfer), adversarial training and
common corruptions, measured on every stage."""
