"""A user model factory, as a user's own package would provide it (used by the tests)."""

from torch import nn


def small_net(input_shape, num_classes, hidden=7):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(__import__("math").prod(input_shape)), hidden),
                         nn.ReLU(), nn.Linear(hidden, num_classes))


def not_a_model():
    return 42


class TwoBranch(__import__("torch").nn.Module):
    """Two conv branches concatenated along channels (a coupling Torch-Pruning must follow)."""

    def __init__(self, num_classes=5):
        import torch.nn as tnn

        super().__init__()
        self.a = tnn.Conv2d(1, 6, 3, padding=1)
        self.b = tnn.Conv2d(1, 4, 3, padding=1)
        self.mix = tnn.Conv2d(10, 8, 3, padding=1)
        self.fc = tnn.Linear(8, num_classes)

    def forward(self, x):
        import torch

        y = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=1)
        return self.fc(torch.relu(self.mix(y)).mean((2, 3)))


def two_branch(num_classes):
    return TwoBranch(num_classes)
