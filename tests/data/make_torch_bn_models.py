"""Regenerate the torch-exported test models that keep their BatchNormalization nodes.

    python tests/data/make_torch_bn_models.py      (needs torch; the .onnx files are committed)

torch.onnx.export with do_constant_folding=False keeps every BatchNormalization node, as
users' exports often do; tests/test_torch_bn_models.py checks onnxc folds them all away.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent


class ConvBnNet(nn.Module):
    """Conv+BN+ReLU blocks, a residual block, a Linear+BatchNorm1d head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(16), nn.ReLU(),
                                   nn.Conv2d(16, 16, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(16))
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32),
                                  nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Linear(32, 24), nn.BatchNorm1d(24), nn.ReLU(),
                                  nn.Linear(24, 10))

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        x = self.pool(self.down(x)).flatten(1)
        return self.head(x)


class BnFirstNet(nn.Module):
    """A lone BatchNorm on the input (no Conv before it), then Conv+BN and a 1-D BN."""

    def __init__(self):
        super().__init__()
        self.bn_in = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 8, 1)
        self.bn = nn.BatchNorm2d(8)
        self.bn1d = nn.BatchNorm1d(8)

    def forward(self, x):
        y = torch.sigmoid(self.bn(self.conv(self.bn_in(x))))
        return self.bn1d(y.mean(dim=(2, 3)))


def _randomize_bn(model: nn.Module, seed: int) -> None:
    """Give BatchNorm layers non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)


def main() -> None:
    torch.manual_seed(0)
    for name, model, shape in (("torch_conv_bn.onnx", ConvBnNet(), (2, 3, 16, 16)),
                               ("torch_bn_first.onnx", BnFirstNet(), (2, 3, 8, 8))):
        _randomize_bn(model, 1)
        model.eval()
        torch.onnx.export(model, (torch.randn(*shape),), str(HERE / name), input_names=["x"],
                          output_names=["y"], opset_version=13, do_constant_folding=False,
                          training=torch.onnx.TrainingMode.EVAL, dynamo=False)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
