"""The whole training step against the official GFPGANModel.optimize_parameters (gfpgan 1.3.8, basicsr 1.4.2).

Both sides get the same random weights (every network of train_gfpgan_v1.yml: GFPGANv1 with its decoder frozen,
the StyleGAN2 discriminator, the three facial component discriminators, ArcFace and VGG19) and the same batch of
two real faces, and run three consecutive iterations, 14 to 16, the last with the lazy R1 penalty. Every option is
the recipe's except, so that it fits a 2-core CPU, the networks' widths (narrow 1/8), the style width (64) and the
perceptual layers (conv1_2 and conv2_2, the recipe's first two, so that VGG19 stops there); the component crops
need the recipe's 512 px faces. The decoder noise is the stored buffers on both sides (the official draws it with
torch's generator otherwise).

float64 on both sides: with beta1 = 0, Adam's first updates are about lr * sign(gradient), so in float32 a gradient
element at the rounding floor flips its update by 2 lr (seen: 3.6e-3 after three steps on a few elements of the
U-Net's final linear layer, while every loss agreed to 1e-4). Tolerances: every loss 1e-9 relative; every parameter
of G, D, the component Ds and the EMA within 1e-8 absolute after the three updates (each about lr = 2e-3; reached:
3.3e-9).
"""
import functools

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import official  # noqa: F401  (before basicsr and gfpgan: makes them run on the CPU torch)
import pytest
import torch
import torchvision
from basicsr.archs import vgg_arch
from gfpgan.archs import arcface_arch
from gfpgan.models import gfpgan_model
from parity_utils import example_faces, randomize, state_dict_numpy
from test_roi_align import kernel_roi_align

from gfpgan_jax.convert import discriminators as convert_discriminators
from gfpgan_jax.convert.arcface import convert_arcface
from gfpgan_jax.convert.generator import convert_state_dict, export_state_dict
from gfpgan_jax.convert.vgg import convert_vgg
from gfpgan_jax.models.options import ORIGINAL, ModelConfig
from gfpgan_jax.training.objective import Objective
from gfpgan_jax.training.state import COMPONENTS, FrozenVariables, Networks, create_train_state
from gfpgan_jax.training.step import train_step

LOSS_RTOL = 1e-9
PARAM_ATOL = 1e-8
PERCEPTUAL_LAYERS = {'conv1_2': 0.1, 'conv2_2': 0.1}
FIRST_ITERATION = 14  # 14, 15, 16: R1 on the last (net_d_reg_every 16)
NARROW = 0.125
STYLE = 64
# (x1, y1, x2, y2) of the left eye, right eye and mouth in the 512 px aligned example faces.
BOXES = np.array([[[160, 210, 240, 290], [272, 210, 352, 290], [196, 320, 316, 440]],
                  [[150, 200, 234, 284], [278, 204, 362, 288], [190, 330, 322, 450]]], np.float32)

GENERATOR = dict(type='GFPGANv1', out_size=512, num_style_feat=STYLE, channel_multiplier=1,
                 resample_kernel=[1, 3, 3, 1], decoder_load_path=None, fix_decoder=True, num_mlp=8, lr_mlp=0.01,
                 input_is_latent=True, different_w=True, narrow=NARROW, sft_half=True)
# options/train_gfpgan_v1.yml's train section.
TRAIN = {
    'optim_g': {'type': 'Adam', 'lr': 2e-3}, 'optim_d': {'type': 'Adam', 'lr': 2e-3},
    'optim_component': {'type': 'Adam', 'lr': 2e-3},
    'scheduler': {'type': 'MultiStepLR', 'milestones': [600000, 700000], 'gamma': 0.5},
    'total_iter': 800000, 'warmup_iter': -1,
    'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1e-1, 'reduction': 'mean'},
    'L1_opt': {'type': 'L1Loss', 'loss_weight': 1, 'reduction': 'mean'},
    'pyramid_loss_weight': 1, 'remove_pyramid_loss': 50000,
    'perceptual_opt': {'type': 'PerceptualLoss', 'layer_weights': PERCEPTUAL_LAYERS, 'vgg_type': 'vgg19',
                       'use_input_norm': True, 'perceptual_weight': 1.0, 'style_weight': 50,
                       'range_norm': True, 'criterion': 'l1'},
    'gan_opt': {'type': 'GANLoss', 'gan_type': 'wgan_softplus', 'loss_weight': 1e-1},
    'r1_reg_weight': 10,
    'gan_component_opt': {'type': 'GANLoss', 'gan_type': 'vanilla', 'real_label_val': 1.0, 'fake_label_val': 0.0,
                          'loss_weight': 1.0},
    'comp_style_weight': 200, 'identity_weight': 10,
    'net_d_iters': 1, 'net_d_init_iters': 0, 'net_d_reg_every': 16,
}


class KernelRoIAlign(torch.autograd.Function):
    """torchvision.ops.roi_align(images, rois, size) with sampling_ratio -1, as the compiled kernel computes it."""

    @staticmethod
    def forward(ctx, images, rois, size):
        ctx.save_for_backward(images, rois)
        ctx.size = size
        return torch.from_numpy(kernel_roi_align(images.detach().numpy(), rois.numpy(), size, size)[0])

    @staticmethod
    def backward(ctx, grad_out):
        images, rois = ctx.saved_tensors
        grad = kernel_roi_align(images.detach().numpy(), rois.numpy(), ctx.size, ctx.size, grad_out.numpy())[1]
        return torch.from_numpy(grad), None, None


def official_model(tmp_path, monkeypatch):
    """GFPGANModel as train_gfpgan_v1.yml builds it (narrower), with random weights everywhere."""
    vgg19 = randomize(torchvision.models.vgg19(weights=None), seed=5)
    # basicsr would download ImageNet weights; hand it this random VGG instead.
    monkeypatch.setattr(vgg_arch.vgg, 'vgg19', lambda pretrained=False: vgg19)
    # torchvision's compiled roi_align does not load beside the CPU torch (and its pure-PyTorch twin needs tens of
    # GB at 512 px): test_roi_align's transcription of the compiled kernel stands in, forward and backward.
    monkeypatch.setattr(gfpgan_model, 'roi_align', lambda images, boxes, output_size: KernelRoIAlign.apply(
        images, boxes, output_size))
    # Its generator's betas (0 ** 1, 0.99 ** 1) mix an int and a float, which current torch refuses.
    monkeypatch.setattr(gfpgan_model.GFPGANModel, 'get_optimizer', lambda self, kind, params, lr, betas: (
        torch.optim.Adam(params, lr, betas=tuple(map(float, betas)))))
    arcface = randomize(arcface_arch.ResNetArcFace('IRBlock', [2, 2, 2, 2], use_se=False), seed=6)
    torch.save(arcface.state_dict(), tmp_path / 'arcface.pth')
    opt = {
        'is_train': True, 'dist': False, 'num_gpu': 0, 'rank': 0, 'world_size': 1,
        'network_g': dict(GENERATOR),
        'network_d': dict(type='StyleGAN2Discriminator', out_size=512, channel_multiplier=1,
                          resample_kernel=[1, 3, 3, 1], narrow=NARROW),
        'network_d_left_eye': {'type': 'FacialComponentDiscriminator'},
        'network_d_right_eye': {'type': 'FacialComponentDiscriminator'},
        'network_d_mouth': {'type': 'FacialComponentDiscriminator'},
        'network_identity': {'type': 'ResNetArcFace', 'block': 'IRBlock', 'layers': [2, 2, 2, 2], 'use_se': False},
        'path': {'pretrain_network_g': None, 'param_key_g': 'params_ema', 'strict_load_g': None,
                 'pretrain_network_d': None, 'pretrain_network_identity': str(tmp_path / 'arcface.pth')},
        'train': {key: dict(value) if isinstance(value, dict) else value for key, value in TRAIN.items()},
    }
    model = gfpgan_model.GFPGANModel(opt)
    for seed, net in enumerate([model.net_g, model.net_d, model.net_d_left_eye, model.net_d_right_eye,
                                model.net_d_mouth]):
        randomize(net, seed).train()
    for net in (model.net_g, model.net_g_ema, model.net_d, model.net_d_left_eye, model.net_d_right_eye,
                model.net_d_mouth, model.network_identity, model.cri_perceptual):
        net.double()  # in place: the optimizers keep their parameters
    model.model_ema(0)  # the EMA starts as a copy of the (now random) generator
    # The stored noise buffers instead of torch's random draws, on both sides.
    model.net_g.forward = functools.partial(type(model.net_g).forward, model.net_g, randomize_noise=False)
    return model, vgg19


def our_setup(model, vgg19):
    config = ModelConfig(arch=ORIGINAL, out_size=512, num_style_feat=STYLE, channel_multiplier=1, narrow=NARROW)
    objective = Objective(noise='fixed', perceptual_layers=tuple(PERCEPTUAL_LAYERS.items()))
    _, generator = convert_state_dict(state_dict_numpy(model.net_g), config)
    discriminator_model_options = dict(channel_multiplier=1, narrow=NARROW)
    networks = Networks.build(config, objective, fix_decoder=True, learning_rates=(2e-3, 2e-3, 2e-3),
                              milestones=(600000, 700000), discriminator_options=discriminator_model_options,
                              generator_params=generator['params'], dtype=jnp.float64)
    discriminator = convert_discriminators.convert_stylegan2_discriminator(state_dict_numpy(model.net_d),
                                                                           networks.discriminator)['params']
    components = {name: convert_discriminators.convert_component_discriminator(
        state_dict_numpy(getattr(model, f'net_d_{name}')))['params'] for name in COMPONENTS}
    generator, discriminator, components = wide((generator, discriminator, components))
    state, noise = create_train_state(networks, jax.random.key(0), generator=generator, discriminator=discriminator,
                                      components=components)
    frozen = FrozenVariables(noise=noise, vgg=wide(convert_vgg(state_dict_numpy(vgg19), networks.vgg)),
                             arcface=wide(convert_arcface(state_dict_numpy(model.network_identity))))
    return state.replace(step=jnp.asarray(FIRST_ITERATION - 1, jnp.int32)), frozen, networks, objective


def wide(tree):
    return jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float64), tree)


def make_batch():
    """The two example faces as ground truth, blurred and shrunk as inputs; [-1, 1], NHWC."""
    gt = (example_faces() + 1) / 2  # (2, 512, 512, 3) RGB in [0, 1]
    lq = np.stack([cv2.resize(cv2.resize(cv2.GaussianBlur(face, (0, 0), 3), (128, 128)), (512, 512))
                   for face in gt])
    return {'lq': np.float64(lq * 2 - 1), 'gt': np.float64(gt * 2 - 1), 'boxes': np.float64(BOXES)}


def official_losses(model, batch, iteration):
    data = {'lq': torch.from_numpy(batch['lq']).permute(0, 3, 1, 2).contiguous(),
            'gt': torch.from_numpy(batch['gt']).permute(0, 3, 1, 2).contiguous()}
    for index, name in enumerate(('loc_left_eye', 'loc_right_eye', 'loc_mouth')):
        data[name] = torch.from_numpy(batch['boxes'][:, index])
    model.feed_data(data)
    model.optimize_parameters(iteration)
    return {key: float(value) for key, value in model.log_dict.items()}


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_three_iterations_equal_the_official(tmp_path, monkeypatch):
    with jax.enable_x64(True):
        three_iterations(tmp_path, monkeypatch)


def three_iterations(tmp_path, monkeypatch):
    model, vgg19 = official_model(tmp_path, monkeypatch)
    state, frozen, networks, objective = our_setup(model, vgg19)
    batch = make_batch()
    step = jax.jit(functools.partial(train_step, networks=networks, objective=objective))

    for iteration in range(FIRST_ITERATION, FIRST_ITERATION + 3):
        expected = official_losses(model, batch, iteration)
        state, metrics = step(state, frozen, {k: jnp.asarray(v) for k, v in batch.items()}, jax.random.key(0))
        for name, value in expected.items():
            ours = float(metrics[name])
            assert abs(ours - value) <= LOSS_RTOL * max(abs(value), 1e-3), (iteration, name, ours, value)
        assert ('l_d_r1' in expected) == (iteration % 16 == 0)
        assert int(metrics['skipped']) == 0

    # Ours exported to the official layout (dtypes kept), against the official parameters.
    config = networks.generator.config
    pairs = [(export_state_dict(config, {'params': state.generator}), model.net_g),
             (export_state_dict(config, {'params': state.generator_ema}), model.net_g_ema),
             (convert_discriminators.export_stylegan2_discriminator({'params': state.discriminator}), model.net_d)]
    pairs += [(convert_discriminators.export_component_discriminator({'params': state.components[name]}),
               getattr(model, f'net_d_{name}')) for name in COMPONENTS]
    worst = {}
    for index, (ours, net) in enumerate(pairs):
        theirs = dict(net.named_parameters())
        assert ours.keys() == theirs.keys()
        for key, array in ours.items():
            worst[f'{index}/{key}'] = float(np.max(np.abs(array - theirs[key].detach().numpy())))
    name, value = max(worst.items(), key=lambda item: item[1])
    assert value <= PARAM_ATOL, (name, value)


def small_setup(arch, dtype, **objective):
    """A 64 px recipe without component discriminators (their crops need 512 px faces), random weights."""
    config = ModelConfig(arch=arch, out_size=64, num_style_feat=32, channel_multiplier=1, narrow=0.25)
    objective = Objective(noise='random', component_gan_weight=0, comp_style_weight=0,
                          perceptual_layers=tuple(PERCEPTUAL_LAYERS.items()), **objective)
    networks = Networks.build(config, objective, fix_decoder=False, learning_rates=(2e-3, 2e-3, 2e-3),
                              discriminator_options=dict(channel_multiplier=1, narrow=0.25), dtype=dtype)
    state, noise = create_train_state(networks, jax.random.key(0))
    keys = jax.random.split(jax.random.key(1), 2)
    frozen = FrozenVariables(noise=noise, vgg=networks.vgg.init(keys[0], jnp.zeros((1, 64, 64, 3))),
                             arcface=networks.arcface.init(keys[1], jnp.zeros((1, 128, 128, 1))))
    gt = jnp.asarray(example_faces()[:, ::8, ::8])
    batch = {'lq': jnp.clip(gt + 0.2 * jax.random.normal(keys[0], gt.shape), -1, 1), 'gt': gt}
    return state, frozen, batch, jax.jit(functools.partial(train_step, networks=networks, objective=objective))


def test_clean_architecture_in_bfloat16_trains():
    """The recipe the official never published (the clean generator, fine-tuned whole), computing in bf16 with fp32
    parameters: finite losses, every network updated, parameters still fp32."""
    state, frozen, batch, step = small_setup('clean', jnp.bfloat16)
    new, metrics = step(state, frozen, batch, jax.random.key(2))
    assert int(metrics['skipped']) == 0
    assert all(np.isfinite(float(value)) for value in metrics.values())
    for before, after in ((state.generator, new.generator), (state.discriminator, new.discriminator)):
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(after))
        assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))
    assert int(new.step) == 1


def test_a_non_finite_loss_skips_the_update():
    state, frozen, batch, step = small_setup('original', jnp.float32)
    batch = dict(batch, lq=batch['lq'].at[0, 0, 0, 0].set(jnp.nan))
    new, metrics = step(state, frozen, batch, jax.random.key(2))
    assert int(metrics['skipped']) == 1 and int(new.step) == 1
    for before, after in zip(jax.tree.leaves(state.replace(step=new.step)), jax.tree.leaves(new)):
        np.testing.assert_array_equal(before, after)
