"""A user model factory, as a user's own package would provide it (used by the tests)."""

from torch import nn


def small_net(input_shape, num_classes, hidden=7):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(__import__("math").prod(input_shape)), hidden),
                         nn.ReLU(), nn.Linear(hidden, num_classes))


def not_a_model():
    return 42
