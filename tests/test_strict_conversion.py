"""The generic converter for plain conv nets: convolutions, BatchNorm statistics and linear layers, strictly."""
import flax.linen as nn
import numpy as np
import pytest
import torch

from gfpgan_jax.convert import strict as torch_modules
from parity_utils import max_abs, nhwc


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4))
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3)))


class FlaxNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3), padding=1, name='body_0')(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-5, name='body_1')(x)
        return nn.Dense(2, name='fc')(x.mean((1, 2)))


@pytest.fixture
def torch_net():
    net = TorchNet().eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in list(net.parameters()) + [net.body[1].running_mean]:
            tensor.copy_(torch.randn(tensor.shape, generator=generator))
        net.body[1].running_var.uniform_(0.5, 2, generator=generator)
    return net


def test_converted_net_matches(torch_net):
    x = torch.rand(2, 3, 8, 8)
    state = {k: v.numpy() for k, v in torch_net.state_dict().items()}
    variables = torch_modules.convert(state, torch_modules.variable_shapes(FlaxNet(), nhwc(x)))
    with torch.no_grad():
        assert max_abs(torch_net(x).numpy(), FlaxNet().apply(variables, nhwc(x))) < 1e-5


def test_conversion_is_strict(torch_net):
    state = {k: v.numpy() for k, v in torch_net.state_dict().items()}
    state['extra.weight'] = np.zeros(1)
    state['fc.weight'] = np.zeros((3, 4))
    del state['fc.bias']
    with pytest.raises(torch_modules.ConversionError, match=r'^weights do not fit the model: 1 missing: '
                       r'params/fc/bias; 1 unused: extra.weight; 1 with the wrong shape: fc.weight'):
        torch_modules.convert(state, torch_modules.variable_shapes(FlaxNet(), np.zeros((1, 8, 8, 3), np.float32)))
