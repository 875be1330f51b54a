"""GFPGAN's training losses against basicsr 1.4.2's loss classes and gfpgan 1.3.8's GFPGANModel, value and gradient.

Everything in float64 on both sides: values to 1e-10 (absolute; the losses are O(1)), gradients to relative 1e-8
(max abs difference over the largest gradient). Where the official computation is a method of GFPGANModel or
BaseModel, it is called unbound on a stand-in `self` holding what it reads; where it is written inline in
GFPGANModel.optimize_parameters (the pyramid weight and loop, the discriminator sums, `_comp_style`, the lazy R1
scaling, the identity term), the test re-states those lines on basicsr's building blocks (`official_*` below).
"""
import official  # noqa: F401  (first: makes torchvision and basicsr importable)

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from basicsr.losses.basic_loss import L1Loss, PerceptualLoss
from basicsr.losses.gan_loss import GANLoss, r1_penalty
from basicsr.models.base_model import BaseModel

from gfpgan.models.gfpgan_model import GFPGANModel
from gfpgan_jax.training import losses
from parity_utils import max_abs, nchw, nhwc

VALUE_TOLERANCE = 1e-10
GRAD_TOLERANCE = 1e-8  # relative to the largest gradient


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def leaf(array):
    """A float64 torch leaf requiring grad, NCHW for 4-d NHWC arrays."""
    array = np.asarray(array, np.float64)
    return torch.from_numpy(np.ascontiguousarray(nchw(array) if array.ndim == 4 else array)).requires_grad_()


def grad_of(tensor):
    grad = tensor.grad.numpy()
    return nhwc(tensor.grad) if grad.ndim == 4 else grad


def assert_value(ours, theirs):
    assert abs(float(ours) - float(theirs)) < VALUE_TOLERANCE, (float(ours), float(theirs))


def assert_grad(ours, theirs):
    theirs = np.asarray(theirs)
    assert max_abs(ours, theirs) <= GRAD_TOLERANCE * np.abs(theirs).max(), max_abs(ours, theirs)


def test_pixel_l1():
    """l1_loss with pixel_opt's weight 0.1 against basicsr's L1Loss(loss_weight=0.1, reduction='mean')."""
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((2, 2, 16, 16, 3))
    theirs = L1Loss(loss_weight=0.1)(pred_t := leaf(pred), leaf(target))
    theirs.backward()
    ours, grad = jax.value_and_grad(losses.l1_loss)(jnp.asarray(pred), jnp.asarray(target), 0.1)
    assert_value(ours, theirs)
    assert_grad(grad, grad_of(pred_t))


def official_pyramid_weight(train_opt, current_iter):
    """The pyramid weight as GFPGANModel.optimize_parameters sets it."""
    weight = train_opt.get('pyramid_loss_weight', 0)
    if weight > 0 and current_iter > train_opt.get('remove_pyramid_loss', float('inf')):
        weight = 1e-12
    return weight


@pytest.mark.parametrize('step', [1, 50000, 50001])
def test_pyramid_loss(step):
    """The per-level pyramid losses at a 64 px face (levels 8..64), before, at and after remove_pyramid_loss, with
    the step traced under jit: against GFPGANModel.construct_img_pyramid (unbound, stand-in self) and the
    optimize_parameters loop on basicsr's L1Loss; gradients w.r.t. every RGB image."""
    rng = np.random.default_rng(1)
    gt = rng.uniform(-1, 1, (2, 64, 64, 3))
    rgbs = [rng.uniform(-1, 1, (2, s, s, 3)) for s in (8, 16, 32, 64)]
    train_opt = {'pyramid_loss_weight': 1, 'remove_pyramid_loss': 50000}

    pyramid_gt = GFPGANModel.construct_img_pyramid(types.SimpleNamespace(gt=leaf(gt).detach(), log_size=6))
    rgbs_t = [leaf(rgb) for rgb in rgbs]
    weight = official_pyramid_weight(train_opt, step)
    theirs = {f'l_p_{2 ** (i + 3)}': L1Loss()(rgbs_t[i], pyramid_gt[i]) * weight for i in range(len(rgbs))}
    sum(theirs.values()).backward()

    def objective(rgbs, step):
        levels = losses.pyramid_loss(rgbs, jnp.asarray(gt), step)
        return sum(levels.values()), levels

    (_, ours), grads = jax.jit(jax.value_and_grad(objective, has_aux=True))([jnp.asarray(r) for r in rgbs], step)
    assert set(ours) == set(theirs)  # (jit returns dicts in sorted key order)
    for name in theirs:
        assert_value(ours[name], theirs[name])
    for grad, rgb_t in zip(grads, rgbs_t):
        assert_grad(grad, grad_of(rgb_t))
    for level, official_level in zip(losses.image_pyramid(jnp.asarray(gt), 4), pyramid_gt):
        assert max_abs(level, nhwc(official_level)) < 1e-15


def test_pyramid_switches():
    """Weight 0 (the official's default without the option) asks for nothing; remove_pyramid_loss None (the
    official's default, inf) never drops the weight; RGB images that are not the pyramid are refused."""
    gt = jnp.zeros((1, 16, 16, 3))
    rgbs = [jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 16, 16, 3))]
    assert losses.pyramid_loss(rgbs, gt, 1, pyramid_loss_weight=0) == {}
    assert losses.pyramid_weight(10 ** 9, 1.0, None) == official_pyramid_weight({'pyramid_loss_weight': 1}, 10 ** 9)
    with pytest.raises(ValueError, match='coarse to fine'):
        losses.pyramid_loss(rgbs[::-1], gt, 1)


def _vgg_features(rng):
    """Random features of the config's five VGG layers (small widths)."""
    shapes = {'conv1_2': (2, 12, 12, 4), 'conv2_2': (2, 6, 6, 8), 'conv3_4': (2, 4, 4, 8), 'conv4_4': (2, 3, 3, 16),
              'conv5_4': (2, 2, 2, 16)}
    return {name: rng.standard_normal(shape) for name, shape in shapes.items()}


def official_perceptual(features, gt_features, criterion, perceptual_weight, style_weight):
    """basicsr's PerceptualLoss.forward on a stand-in (its VGG hands out the given features, output then gt)."""
    module = PerceptualLoss.__new__(PerceptualLoss)
    torch.nn.Module.__init__(module)
    module.layer_weights = losses.VGG_LAYER_WEIGHTS
    module.perceptual_weight, module.style_weight = perceptual_weight, style_weight
    module.criterion_type = criterion
    module.criterion = torch.nn.L1Loss() if criterion == 'l1' else None
    handed_out = iter([features, gt_features])
    module.vgg = lambda images: next(handed_out)
    return module(torch.zeros(1), torch.zeros(1))


@pytest.mark.parametrize('criterion', ['l1', 'fro'])
def test_perceptual_and_style(criterion):
    """perceptual_loss with the config's layer weights, perceptual 1 and style 50, against basicsr's
    PerceptualLoss.forward on the same features: both terms and their gradients w.r.t. the output's features;
    none reaches the ground truth's (basicsr detaches gt); a zero weight gives None as basicsr does."""
    rng = np.random.default_rng(2)
    features, gt_features = _vgg_features(rng), _vgg_features(rng)
    features_t = {name: leaf(f) for name, f in features.items()}
    gt_t = {name: leaf(f).detach() for name, f in gt_features.items()}
    percep_t, style_t = official_perceptual(features_t, gt_t, criterion, 1.0, 50.0)

    def both_terms(features, gt_features):
        return jnp.stack(losses.perceptual_loss(features, gt_features, criterion=criterion))

    as_jax = lambda tree: {name: jnp.asarray(f) for name, f in tree.items()}  # noqa: E731
    ours = both_terms(as_jax(features), as_jax(gt_features))
    grads, gt_grads = jax.jit(jax.jacrev(both_terms, argnums=(0, 1)))(as_jax(features), as_jax(gt_features))
    for term, theirs in enumerate((percep_t, style_t)):
        for f in features_t.values():
            f.grad = None
        theirs.backward()
        assert_value(ours[term], theirs)
        for name, f in features_t.items():
            assert_grad(grads[name][term], grad_of(f))
            assert not np.any(np.asarray(gt_grads[name]))

    percep, style = losses.perceptual_loss(as_jax(features), as_jax(gt_features), style_weight=0, criterion=criterion)
    assert style is None and official_perceptual(features_t, gt_t, criterion, 1.0, 0.0)[1] is None
    assert_value(percep, percep_t)
    with pytest.raises(ValueError, match='criterion'):
        losses.perceptual_loss(features, gt_features, criterion='l2')


GAN_CASES = [('wgan_softplus', dict(loss_weight=0.1)), ('vanilla', dict(loss_weight=1.0)),
             ('vanilla', dict(real_label=0.9, fake_label=0.1, loss_weight=0.5))]


@pytest.mark.parametrize('gan_type, options', GAN_CASES)
def test_gan_loss(gan_type, options):
    """gan_loss for real and fake targets, generator and discriminator, against basicsr's GANLoss (predictions
    up to +-25, where torch's softplus switches to the identity): value and gradient."""
    rng = np.random.default_rng(3)
    pred = np.concatenate([rng.standard_normal(30) * 3, [-25.0, 25.0]]).reshape(2, 4, 4, 1)
    module = GANLoss(gan_type, real_label_val=options.get('real_label', 1.0),
                     fake_label_val=options.get('fake_label', 0.0), loss_weight=options['loss_weight'])
    for target_is_real in (True, False):
        for is_disc in (True, False):
            theirs = module(pred_t := leaf(pred), target_is_real, is_disc=is_disc)
            theirs.backward()
            ours, grad = jax.value_and_grad(losses.gan_loss)(jnp.asarray(pred), target_is_real, gan_type,
                                                             is_disc, **options)
            assert_value(ours, theirs)
            assert_grad(grad, grad_of(pred_t))


def test_discriminator_losses():
    """discriminator_loss against the official l_d; component_discriminator_loss against the official
    l_d_left_eye (vanilla for real crops, the main wgan_softplus criterion for generated ones); the consistent
    variant against vanilla for both, which with labels 1 / 0 is the same number, and not with other labels."""
    rng = np.random.default_rng(4)
    real, fake = rng.standard_normal((2, 3, 1))
    real_j, fake_j = jnp.asarray(real), jnp.asarray(fake)
    cri_gan = GANLoss('wgan_softplus', loss_weight=0.1)
    cri_component = GANLoss('vanilla', real_label_val=1.0, fake_label_val=0.0, loss_weight=1.0)

    theirs = cri_gan(real_t := leaf(real), True, is_disc=True) + cri_gan(fake_t := leaf(fake), False, is_disc=True)
    theirs.backward()
    ours, grads = jax.value_and_grad(losses.discriminator_loss, argnums=(0, 1))(real_j, fake_j)
    assert_value(ours, theirs)
    assert_grad(grads[0], grad_of(real_t))
    assert_grad(grads[1], grad_of(fake_t))

    theirs = cri_component(real_t := leaf(real), True, is_disc=True) + cri_gan(fake_t := leaf(fake), False,
                                                                                is_disc=True)
    theirs.backward()
    ours, grads = jax.value_and_grad(losses.component_discriminator_loss, argnums=(0, 1))(real_j, fake_j)
    assert_value(ours, theirs)
    assert_grad(grads[0], grad_of(real_t))
    assert_grad(grads[1], grad_of(fake_t))

    consistent = cri_component(leaf(real), True, is_disc=True) + cri_component(leaf(fake), False, is_disc=True)
    assert_value(losses.component_discriminator_loss(real_j, fake_j, consistent=True), consistent)
    assert_value(consistent, theirs)
    smoothed = dict(real_label=0.9, fake_label=0.1)
    assert abs(float(losses.component_discriminator_loss(real_j, fake_j, consistent=True, **smoothed))
               - float(losses.component_discriminator_loss(real_j, fake_j, **smoothed))) > 1e-3


def _discriminator(weights, images, lib):
    """A small nonlinear stand-in discriminator, (b, ...) -> (b, 1), for torch (NCHW weights and images) and for
    JAX (NHWC)."""
    return (lib.tanh(images * weights[0]) * weights[1]).sum((1, 2, 3))[:, None]


def test_lazy_r1():
    """r1_penalty_and_pred and lazy_r1_loss (weight 10, every 16) against basicsr's r1_penalty and the
    official's r1_reg_weight / 2 * penalty * net_d_reg_every + 0 * real_pred[0]: the value, and the gradient
    w.r.t. the discriminator's weights through the input gradient (basicsr's create_graph=True)."""
    rng = np.random.default_rng(5)
    real = rng.standard_normal((3, 6, 5, 2))
    weights = rng.standard_normal((2, 6, 5, 2))
    real_t, weights_t = leaf(real), leaf(weights)  # NCHW, as the official's
    real_pred = _discriminator(weights_t, real_t, torch)
    penalty_t = r1_penalty(real_pred, real_t)
    theirs = 10 / 2 * penalty_t * 16 + 0 * real_pred[0]
    theirs.backward()

    def objective(weights):
        penalty, pred = losses.r1_penalty_and_pred(lambda x: _discriminator(weights, x, jnp), jnp.asarray(real))
        return losses.lazy_r1_loss(penalty, pred), penalty

    (ours, penalty), grad = jax.jit(jax.value_and_grad(objective, has_aux=True))(jnp.asarray(weights))
    assert_value(penalty, penalty_t)
    assert theirs.shape == (1,)
    assert_value(ours, theirs[0])
    assert_grad(grad, grad_of(weights_t))


def official_comp_style(feat, feat_gt):
    """GFPGANModel.optimize_parameters' `_comp_style` with cri_l1 (L1_opt) and GFPGANModel._gram_mat (unbound)."""
    gram = lambda x: GFPGANModel._gram_mat(None, x)  # noqa: E731
    criterion = L1Loss(loss_weight=1)
    return (criterion(gram(feat[0]), gram(feat_gt[0].detach())) * 0.5
            + criterion(gram(feat[1]), gram(feat_gt[1].detach())))


def test_component_losses():
    """The component generator losses (vanilla, weight 1) and component_style_loss (x200) over left eye, right
    eye and mouth against the official's: values, gradients w.r.t. the generated crops' features, none w.r.t.
    the real ones'."""
    rng = np.random.default_rng(6)
    shapes = [(2, 10, 10, 8), (2, 5, 5, 16)]  # the two feature levels (after conv3 and conv5), narrowed
    fake = [[rng.standard_normal(s) for s in shapes] for _ in range(3)]
    real = [[rng.standard_normal(s) for s in shapes] for _ in range(3)]
    preds = rng.standard_normal((3, 2, 3, 3, 1))

    fake_t = [[leaf(f) for f in pair] for pair in fake]
    real_t = [[leaf(f) for f in pair] for pair in real]
    theirs = sum(official_comp_style(f, r) for f, r in zip(fake_t, real_t)) * 200
    theirs.backward()

    def objective(fake, real):
        return losses.component_style_loss(fake, real, comp_style_weight=200.0)

    ours, (grads, real_grads) = jax.jit(jax.value_and_grad(objective, argnums=(0, 1)))(
        jax.tree.map(jnp.asarray, fake), jax.tree.map(jnp.asarray, real))
    assert_value(ours, theirs)
    for pair, pair_t, real_pair in zip(grads, fake_t, real_grads):
        for grad, f in zip(pair, pair_t):
            assert_grad(grad, grad_of(f))
        assert not any(np.any(np.asarray(g)) for g in real_pair)

    cri_component = GANLoss('vanilla', real_label_val=1.0, fake_label_val=0.0, loss_weight=1.0)
    for pred in preds:
        theirs = cri_component(pred_t := leaf(pred), True, is_disc=False)
        theirs.backward()
        ours, grad = jax.value_and_grad(losses.gan_loss)(jnp.asarray(pred), True, 'vanilla')
        assert_value(ours, theirs)
        assert_grad(grad, grad_of(pred_t))


@pytest.mark.parametrize('side', [512, 64])
def test_identity_loss(side):
    """gray_resize_for_identity against GFPGANModel.gray_resize_for_identity (unbound) from 512 px (down 4x) and
    64 px (up 2x) to 128, and identity_loss (weight 10) against the official's l_identity with the same stand-in
    embedding network on both sides: value and gradient w.r.t. the output."""
    rng = np.random.default_rng(7)
    output, gt = rng.uniform(-1, 1, (2, 2, side, side, 3))
    projection = rng.standard_normal((128 * 128, 8)) / 128

    def embed_torch(grey):
        return torch.tanh(grey.reshape(grey.shape[0], -1) @ torch.from_numpy(projection))

    def embed(grey):
        return jnp.tanh(grey.reshape(grey.shape[0], -1) @ projection)

    out_grey = GFPGANModel.gray_resize_for_identity(None, output_t := leaf(output))
    gt_grey = GFPGANModel.gray_resize_for_identity(None, leaf(gt))
    assert max_abs(losses.gray_resize_for_identity(jnp.asarray(output)), nhwc(out_grey)) < 1e-12
    theirs = L1Loss(loss_weight=1)(embed_torch(out_grey), embed_torch(gt_grey).detach()) * 10
    theirs.backward()

    ours, (grad, gt_grad) = jax.jit(jax.value_and_grad(lambda o, g: losses.identity_loss(embed, o, g),
                                                       argnums=(0, 1)))(jnp.asarray(output), jnp.asarray(gt))
    assert_value(ours, theirs)
    assert_grad(grad, grad_of(output_t))
    assert not np.any(np.asarray(gt_grad))


def test_ema_update():
    """ema_update with the official decay against basicsr's BaseModel.model_ema (unbound, stand-in self), which
    averages parameters and leaves buffers alone."""
    torch.manual_seed(0)
    net_g, net_g_ema = (torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).double()
                        for _ in range(2))
    for module in (net_g, net_g_ema):
        module[1].running_mean.normal_()
    ema_before = {k: v.detach().numpy().copy() for k, v in net_g_ema.named_parameters()}
    buffers_before = {k: v.clone() for k, v in net_g_ema.named_buffers()}
    params = {k: v.detach().numpy().copy() for k, v in net_g.named_parameters()}

    BaseModel.model_ema(types.SimpleNamespace(net_g=net_g, net_g_ema=net_g_ema, get_bare_model=lambda net: net),
                        decay=0.5 ** (32 / (10 * 1000)))
    ours = losses.ema_update(jax.tree.map(jnp.asarray, ema_before), jax.tree.map(jnp.asarray, params))
    for name, tensor in net_g_ema.named_parameters():
        assert max_abs(ours[name], tensor.detach()) < 1e-15
    assert all(torch.equal(buffers_before[k], v) for k, v in net_g_ema.named_buffers())
