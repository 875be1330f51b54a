"""GFPGAN's training losses (gfpgan 1.3.8's GFPGANModel on basicsr 1.4.2's losses) as pure functions, NHWC.

Defaults are the values of the official recipe, options/train_gfpgan_v1.yml (the only published training config),
where it sets them; basicsr's class defaults are named where they differ. Weights are plain multipliers (Python
floats or traced scalars); a weight that decides whether a term exists at all (as `perceptual_weight > 0` does in
basicsr) must be a Python number. Every loss is computed in at least float32 whatever the inputs' dtype.

How the official generator objective maps onto these functions (`cri_l1` is L1_opt: L1, weight 1, mean):
  l_g_pix           l1_loss(output, gt, 0.1)                         pixel_opt
  l_p_{8..512}      pyramid_loss(rgbs, gt, step)                      pyramid_loss_weight 1, remove_pyramid_loss 50k
  l_g_percep/style  perceptual_loss(vgg(output), vgg(gt))             perceptual_opt
  l_g_gan           gan_loss(d(output), True, 'wgan_softplus', loss_weight=0.1)     gan_opt
  l_g_gan_<part>    gan_loss(d_part(crop), True, 'vanilla', loss_weight=1.0)      gan_component_opt
  l_g_comp_style    component_style_loss(fake_feats, real_feats)    comp_style_weight 200
  l_identity        identity_loss(arcface, output, gt)               identity_weight 10
and the discriminators': discriminator_loss (net_d), lazy_r1_loss (every net_d_reg_every = 16 iterations, weight
10), component_discriminator_loss (each facial component). The crops come from
`gfpgan_jax.ops.roi_align.crop_facial_components`.

The component losses take a `row_mask`, (b,) bool: which faces have eye and mouth boxes. Each is then the mean over
those faces only, and 0 (with zero gradients) when there are none; without a mask it is the official's mean over
the whole batch.
"""
import jax
import jax.numpy as jnp
import numpy as np

from gfpgan_jax.models.layers import wide_dtype
from gfpgan_jax.ops.resample import downsample_bilinear_2x

# perceptual_opt of train_gfpgan_v1.yml: VGG19 features before their ReLU, and their weights.
VGG_LAYER_WEIGHTS = {'conv1_2': 0.1, 'conv2_2': 0.1, 'conv3_4': 1.0, 'conv4_4': 1.0, 'conv5_4': 1.0}
# What GFPGANModel.optimize_parameters passes to basicsr's model_ema (whose own default, 0.999, it overrides):
# StyleGAN2's half-life of 10k images at its batch of 32, kept although GFPGAN trains with a batch of 12.
EMA_DECAY = 0.5 ** (32 / (10 * 1000))
# What the official drops the pyramid weight to after `remove_pyramid_loss` iterations, rather than to 0 (which
# would leave the U-Net's RGB heads without gradient, an error for its DistributedDataParallel).
PYRAMID_WEIGHT_REMOVED = 1e-12
# Greyscale weights of GFPGANModel.gray_resize_for_identity, for RGB channels.
_GREY = (0.2989, 0.5870, 0.1140)
_EXACT = jax.lax.Precision.HIGHEST


def _wide(x):
    x = jnp.asarray(x)
    return x.astype(wide_dtype(x.dtype))


def _mean(values, row_mask=None):
    """jnp.mean(values), or with `row_mask` ((b,) bool) the mean over the rows it keeps: every row has as many
    elements, so it is the mean of their per-row means. 0, with zero gradients, when it keeps none."""
    if row_mask is None:
        return jnp.mean(values)
    row_mask = jnp.asarray(row_mask)
    if row_mask.shape != values.shape[:1]:
        raise ValueError(f'row_mask must be ({values.shape[0]},), one flag per row, got shape {row_mask.shape}')
    row_mask = row_mask.astype(bool)
    # Dropped rows become 0 (not multiplied by 0, which would keep a non-finite row's NaN), and the divisor counts
    # at least one row: an all-dropped batch gives 0 / 1, with zero gradients.
    kept = jnp.where(row_mask.reshape((-1,) + (1,) * (values.ndim - 1)), values, 0)
    count = jnp.maximum(jnp.sum(row_mask, dtype=jnp.int32), 1) * (values.size // values.shape[0])
    return jnp.sum(kept) / count.astype(values.dtype)


def l1_loss(pred, target, loss_weight=1.0, row_mask=None):
    """basicsr's L1Loss(reduction='mean'): loss_weight * mean |pred - target|. basicsr's default weight is 1
    (L1_opt); pixel_opt sets 0.1. `row_mask`: see the module's docstring."""
    return loss_weight * _mean(jnp.abs(_wide(pred) - _wide(target)), row_mask)


def image_pyramid(gt, levels):
    """GFPGANModel.construct_img_pyramid: `levels` images, coarse to fine, the finest `gt` and each coarser one
    the next finer halved with F.interpolate(scale_factor=0.5, bilinear, align_corners=False), a 2x2 mean."""
    pyramid = [gt]
    for _ in range(levels - 1):
        pyramid.insert(0, downsample_bilinear_2x(pyramid[0]))
    return pyramid


def pyramid_weight(step, pyramid_loss_weight=1.0, remove_pyramid_loss=50000):
    """The pyramid loss's weight at (1-based, as basicsr's current_iter) iteration `step`: `pyramid_loss_weight`,
    then PYRAMID_WEIGHT_REMOVED once step > remove_pyramid_loss (None: never). `step` may be traced."""
    if remove_pyramid_loss is None:
        return pyramid_loss_weight
    return jnp.where(step > remove_pyramid_loss, PYRAMID_WEIGHT_REMOVED, pyramid_loss_weight)


def pyramid_loss(rgbs, gt, step, pyramid_loss_weight=1.0, remove_pyramid_loss=50000):
    """The intermediate restoration loss: L1 of each U-Net RGB image against the ground truth at its size.

    Args:
        rgbs: the generator's intermediate RGB images, coarse to fine (8, 16, ..., s px), as the official's
            `out_rgbs` and our `Restoration.rgbs`.
        gt: (b, s, s, 3) ground truth.
        step: the 1-based iteration (see `pyramid_weight`).
        pyramid_loss_weight: a Python number; 0 (basicsr's default when the option is absent) turns the loss off,
            and the official then does not even ask the generator for its RGB images.

    Returns:
        {'l_p_8': ..., 'l_p_16': ..., ...}: one loss per level, named as the official logs them; the generator's
        objective adds them all. Empty when the weight is 0.
    """
    if pyramid_loss_weight <= 0:
        return {}
    pyramid = image_pyramid(gt, len(rgbs))
    if [rgb.shape for rgb in rgbs] != [level.shape for level in pyramid]:
        raise ValueError(f'pyramid_loss: the RGB images must be the ground truth halved repeatedly, coarse to fine; '
                         f'got {[rgb.shape for rgb in rgbs]} for ground truth {gt.shape}')
    weight = pyramid_weight(step, pyramid_loss_weight, remove_pyramid_loss)
    return {f'l_p_{rgb.shape[1]}': l1_loss(rgb, level) * weight for rgb, level in zip(rgbs, pyramid)}


def gram_matrix(features):
    """(n, h, w, c) -> (n, c, c): channel correlations divided by c * h * w, as basicsr's and GFPGAN's _gram_mat."""
    n, h, w, c = features.shape
    flat = _wide(features).reshape(n, h * w, c)
    return jnp.einsum('npc,npd->ncd', flat, flat, precision=_EXACT) / (c * h * w)


def _feature_distance(a, b, criterion):
    if criterion == 'l1':
        return jnp.mean(jnp.abs(a - b))
    return jnp.sqrt(jnp.sum((a - b) ** 2))  # 'fro': torch.norm(p='fro') of the whole batch's difference


def perceptual_loss(features, gt_features, layer_weights=None, perceptual_weight=1.0, style_weight=50.0,
                    criterion='l1'):
    """basicsr's PerceptualLoss on features already extracted (gfpgan_jax.models.vgg.VGGFeatureExtractor with
    train_gfpgan_v1.yml's vgg19, use_input_norm, range_norm).

    Args:
        features, gt_features: {layer name: (n, h, w, c)} of the output and the ground truth. No gradient reaches
            the ground truth's (basicsr extracts them from `gt.detach()`).
        layer_weights: {layer name: weight}; default VGG_LAYER_WEIGHTS (the config's; basicsr has no default).
        perceptual_weight: basicsr's default 1.0, the config's too.
        style_weight: Gram-matrix (style) loss weight; the config's 50 (basicsr's default 0).
        criterion: 'l1' (mean absolute difference; basicsr's default and the config's) or 'fro' (Frobenius norm
            of the difference over the whole batch). basicsr's 'l2' cannot run (it names torch.nn.L2loss, which
            does not exist), so it is refused here too.

    Returns:
        (perceptual, style): each a scalar, or None where its weight is not positive (basicsr then skips it).
    """
    layer_weights = VGG_LAYER_WEIGHTS if layer_weights is None else layer_weights
    if criterion not in ('l1', 'fro'):
        raise ValueError(f"perceptual_loss: criterion must be 'l1' or 'fro', got {criterion!r}")
    missing = [name for name in layer_weights if name not in features or name not in gt_features]
    if missing:
        raise ValueError(f'perceptual_loss: no features for layers {missing}')
    pairs = [(_wide(features[name]), jax.lax.stop_gradient(_wide(gt_features[name])), weight)
             for name, weight in layer_weights.items()]
    perceptual = style = None
    if perceptual_weight > 0:
        perceptual = sum(_feature_distance(x, y, criterion) * weight for x, y, weight in pairs) * perceptual_weight
    if style_weight > 0:
        style = sum(_feature_distance(gram_matrix(x), gram_matrix(y), criterion) * weight
                    for x, y, weight in pairs) * style_weight
    return perceptual, style


def gan_loss(pred, target_is_real, gan_type, is_disc=False, loss_weight=1.0, real_label=1.0, fake_label=0.0,
             row_mask=None):
    """basicsr's GANLoss for the two types GFPGAN uses; `loss_weight` applies to generators only (is_disc=False).
    `row_mask`: see the module's docstring.

    'wgan_softplus' (gan_opt, weight 0.1): mean softplus(-pred) for real targets, mean softplus(pred) for fake.
    'vanilla' (gan_component_opt, weight 1, labels 1 and 0): binary cross-entropy with logits against
    real_label / fake_label. With labels 1 and 0 the two are the same function (BCE(x, 1) = softplus(-x),
    BCE(x, 0) = softplus(x)). torch's softplus returns x itself above x = 20, where log(1 + e^x) exceeds x by
    less than 2.1e-9; here it is exact.
    """
    pred = _wide(pred)
    if gan_type == 'wgan_softplus':
        loss = _mean(jax.nn.softplus(-pred if target_is_real else pred), row_mask)
    elif gan_type == 'vanilla':
        label = real_label if target_is_real else fake_label
        loss = _mean((1 - label) * pred + jax.nn.softplus(-pred), row_mask)
    else:
        raise ValueError(f"gan_loss: gan_type must be 'wgan_softplus' or 'vanilla', got {gan_type!r}")
    return loss if is_disc else loss * loss_weight


def discriminator_loss(real_pred, fake_pred, gan_type='wgan_softplus'):
    """The main discriminator's l_d: real images as real, generated ones as fake (no loss weight)."""
    return gan_loss(real_pred, True, gan_type, is_disc=True) + gan_loss(fake_pred, False, gan_type, is_disc=True)


def component_discriminator_loss(real_pred, fake_pred, consistent=False, real_label=1.0, fake_label=0.0,
                                 row_mask=None):
    """l_d_left_eye / l_d_right_eye / l_d_mouth of a facial-component discriminator.

    The official scores the real crops with the component criterion (vanilla) but the generated ones with the
    main criterion (`self.cri_gan`, wgan_softplus); `consistent=True` uses vanilla for both. With the config's
    labels (1, 0) both give the same number (see gan_loss); they differ only for other labels. `row_mask`: see the
    module's docstring.
    """
    labels = dict(is_disc=True, real_label=real_label, fake_label=fake_label, row_mask=row_mask)
    real = gan_loss(real_pred, True, 'vanilla', **labels)
    fake = gan_loss(fake_pred, False, 'vanilla' if consistent else 'wgan_softplus', **labels)
    return real + fake


def r1_penalty(real_grad):
    """basicsr's r1_penalty from the gradient of the discriminator's summed predictions w.r.t. the real images:
    the squared gradient summed per image, averaged over the batch."""
    squares = _wide(real_grad) ** 2
    return jnp.mean(jnp.sum(squares.reshape(squares.shape[0], -1), axis=1))


def r1_penalty_and_pred(discriminator, real_images):
    """(r1_penalty, real_pred) for `discriminator`, a function images -> predictions (close it over the
    parameters: the penalty is differentiable w.r.t. them, as basicsr's create_graph=True makes it)."""
    real_pred, pullback = jax.vjp(discriminator, real_images)
    (real_grad,) = pullback(jnp.ones_like(real_pred))
    return r1_penalty(real_grad), real_pred


def lazy_r1_loss(penalty, real_pred, r1_reg_weight=10.0, net_d_reg_every=16):
    """The official's lazy R1 term, r1_reg_weight / 2 * penalty * net_d_reg_every + 0 * real_pred[0], taken on
    iterations divisible by net_d_reg_every (config: weight 10, every 16 iterations). The zero term only keeps
    every prediction in the graph for DistributedDataParallel; it adds nothing unless the prediction is not
    finite. The official's value has shape (1,); this is its scalar."""
    return r1_reg_weight / 2 * penalty * net_d_reg_every + 0 * jnp.sum(_wide(real_pred[0]))


def component_style_loss(fake_feats, real_feats, comp_style_weight=200.0, row_mask=None):
    """l_g_comp_style: Gram-matrix L1 between a component discriminator's two feature levels on generated and on
    real crops, 0.5 for the first (after conv3) and 1 for the second (after conv5), summed over the components,
    times comp_style_weight (config 200; the official skips the term when it is not positive).

    Args:
        fake_feats, real_feats: per component (left eye, right eye, mouth), the pair of (n, h, w, c) features the
            component discriminator returns with return_feats=True. No gradient reaches the real ones.
        row_mask: see the module's docstring.
    """
    if len(fake_feats) != len(real_feats):
        raise ValueError(f'component_style_loss: {len(fake_feats)} generated and {len(real_feats)} real components')
    total = 0
    for (fake_low, fake_high), (real_low, real_high) in zip(fake_feats, real_feats):
        low = l1_loss(gram_matrix(fake_low), jax.lax.stop_gradient(gram_matrix(real_low)), row_mask=row_mask)
        high = l1_loss(gram_matrix(fake_high), jax.lax.stop_gradient(gram_matrix(real_high)), row_mask=row_mask)
        total = total + low * 0.5 + high
    return total * comp_style_weight


def _bilinear_matrix(in_size, out_size):
    """(out, in) weights of F.interpolate(size=out, mode='bilinear', align_corners=False) along one axis."""
    source = np.maximum((np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5, 0)
    low = np.minimum(np.floor(source).astype(int), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    frac = source - low
    matrix = np.zeros((out_size, in_size))
    np.add.at(matrix, (np.arange(out_size), low), 1 - frac)
    np.add.at(matrix, (np.arange(out_size), high), frac)
    return matrix


def gray_resize_for_identity(images, size=128):
    """GFPGANModel.gray_resize_for_identity: (b, h, w, 3) RGB -> (b, size, size, 1) greyscale, resized with
    bilinear interpolation (align_corners=False, no antialiasing) as ArcFace's input."""
    images = _wide(images)
    grey = _GREY[0] * images[..., 0] + _GREY[1] * images[..., 1] + _GREY[2] * images[..., 2]
    rows = jnp.asarray(_bilinear_matrix(grey.shape[1], size), grey.dtype)
    cols = jnp.asarray(_bilinear_matrix(grey.shape[2], size), grey.dtype)
    grey = jnp.einsum('ph,bhw,qw->bpq', rows, grey, cols, precision=_EXACT)
    return grey[..., None]


def identity_loss(embed, output, gt, identity_weight=10.0):
    """l_identity: identity_weight * L1 between the identity embeddings of the output and of the ground truth
    (no gradient through the latter), both greyscaled and resized to 128 px first.

    `embed`: greyscale faces (b, 128, 128, 1) -> embeddings, e.g. ResNetArcFace's apply closed over its
    variables (eval mode, as the official's).
    """
    target = jax.lax.stop_gradient(embed(gray_resize_for_identity(gt)))
    return l1_loss(embed(gray_resize_for_identity(output)), target) * identity_weight


def ema_update(ema_params, params, decay=EMA_DECAY):
    """basicsr's BaseModel.model_ema on parameter pytrees: ema * decay + params * (1 - decay).

    Only parameters are averaged: the EMA generator's buffers (the decoder's stored noise images, a `noise`
    collection here) keep their own values. The official starts the EMA as a copy of the parameters
    (model_ema(decay=0)) unless it loads a pretrained `params_ema`.
    """
    return jax.tree.map(lambda ema, new: ema * decay + new * (1 - decay), ema_params, params)
