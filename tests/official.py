"""The official PyTorch GFPGAN stack (gfpgan 1.3.8 / basicsr 1.4.2 / facexlib 0.3.0), importable on a CPU torch.

Test-only: the library never imports torch. Three things stop the official packages from importing next to the
CPU build of torch; each is mended here, before torchvision or basicsr is first imported.
"""
import importlib
import sys
import types

import torch


def _declare_torchvision_nms():
    # The registry's torchvision ships ops compiled against a CUDA torch; its Python layer only needs the op's
    # schema to exist. A plain greedy NMS stands in for the compiled kernel.
    try:
        for op in ('nms', 'qnms'):
            torch.library.define(f'torchvision::{op}', '(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    except RuntimeError:
        return  # already declared (by a real torchvision build or an earlier import)

    @torch.library.impl('torchvision::nms', 'CPU')
    def _nms(dets, scores, iou_threshold):
        order = torch.sort(scores, descending=True, stable=True).indices  # torchvision's kernel sorts stably
        x1, y1, x2, y2 = dets.unbind(1)
        areas = (x2 - x1) * (y2 - y1)
        keep = []
        alive = torch.ones(len(order), dtype=torch.bool)
        for rank, i in enumerate(order.tolist()):
            if not alive[rank]:
                continue
            keep.append(i)
            rest = order[rank + 1:]
            w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
            h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
            inter = w * h
            iou = inter / (areas[i] + areas[rest] - inter)
            alive[rank + 1:] &= iou <= iou_threshold
        return torch.tensor(keep, dtype=torch.int64)


def _alias_functional_tensor():
    # basicsr 1.4.2 imports a module torchvision has since renamed.
    renamed = importlib.import_module('torchvision.transforms._functional_tensor')
    sys.modules.setdefault('torchvision.transforms.functional_tensor', renamed)


def _fused_bias_act(x, bias, ref, act, grad, alpha, scale):
    # CPU twin of basicsr's CUDA kernel for act 3 (leaky ReLU): grad 0 is the forward pass, grad 1 the
    # derivative, whose sign is read from `ref` (the forward output). Bias broadcasts along dim 1.
    assert act == 3, act
    if bias.numel():
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    positive = (x > 0) if grad == 0 else (ref > 0)
    return torch.where(positive, x, x * alpha) * scale


def _stand_in_fused_act_ext():
    name = 'basicsr.ops.fused_act.fused_act_ext'
    if name not in sys.modules:
        sys.modules[name] = types.SimpleNamespace(fused_bias_act=_fused_bias_act)


def _import_torchvision():
    try:
        importlib.import_module('torchvision')
        return
    except RuntimeError:  # compiled ops that do not load beside this torch (a GPU machine's torchvision loads)
        for name in [m for m in sys.modules if m == 'torchvision' or m.startswith('torchvision.')]:
            del sys.modules[name]
    _declare_torchvision_nms()
    importlib.import_module('torchvision.extension')._has_ops = lambda: True  # nms now has a CPU kernel


# Test workers share two cores: one thread each avoids oversubscription, which slows torch's CPU kernels badly.
torch.set_num_threads(1)
_import_torchvision()
_alias_functional_tensor()
_stand_in_fused_act_ext()

from basicsr.archs import stylegan2_arch  # noqa: E402,F401
from basicsr.ops import fused_act  # noqa: E402

fused_act.fused_act_ext = sys.modules['basicsr.ops.fused_act.fused_act_ext']

from gfpgan.archs import gfpganv1_arch, gfpganv1_clean_arch, stylegan2_clean_arch  # noqa: E402,F401
