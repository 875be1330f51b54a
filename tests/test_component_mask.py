"""train_step's `has_boxes`: faces without eye and mouth boxes add nothing to the facial component losses.

The component losses crop 512 px faces, where the real generator's step takes minutes to compile on this CPU, so
the recipe here keeps everything the mask touches real (train_step, RoI Align crops, the three
FacialComponentDiscriminators, the component GAN and style losses, Adam) and stands in a one-convolution generator
and a pooled linear discriminator for GFPGANv1 and the StyleGAN2 discriminator (rows stay independent in both, as
in the real ones). The faces and boxes are tests/test_train_step.py's two 512 px examples, in float32.

The checks:
  - all True is the step without `has_boxes`, to the bit: train_step runs the same program for both, so
    tests/test_train_step.py's parity with the official, which passes no flags, covers the masked means training
    runs (the plain jnp.mean is an ulp away from them here and there: XLA folds its constant cotangent's sums);
  - one row False gives the component terms of the batch holding only the other row (float32 rounding, 1e-6
    relative; reached 4.3e-7), and nothing of the step depends on that row's boxes, to the bit: its crops get no
    gradient, from the generator's terms or the component discriminators';
  - all False gives component terms and component gradients of exactly 0, no NaN, and (from the first step's zero
    Adam moments) component discriminators left where they were.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train_step import make_batch

from gfpgan_jax.models.discriminators import FacialComponentDiscriminator
from gfpgan_jax.models.options import ModelConfig
from gfpgan_jax.models.outputs import Restoration
from gfpgan_jax.models.stylegan2 import EqualConv2d
from gfpgan_jax.training import optimizers
from gfpgan_jax.training.objective import Objective
from gfpgan_jax.training.state import COMPONENTS, FrozenVariables, Networks, create_train_state
from gfpgan_jax.training.step import train_step

SIZE = 512  # crop_facial_components' smallest face
RTOL = 1e-6
COMPONENT_TERMS = [f'l_g_gan_{name}' for name in COMPONENTS] + ['l_g_comp_style_loss']
COMPONENT_D_TERMS = [f'l_d_{name}' for name in COMPONENTS] + [f'grad_norm_d_{name}' for name in COMPONENTS]


class ConvRestorer(nn.Module):
    """Stand-in generator: the input plus a 3x3 convolution of it (no RGB pyramid, no latent)."""
    config: ModelConfig

    @nn.compact
    def __call__(self, x, noise='fixed'):
        return Restoration(x + EqualConv2d(3, 3, padding=1, name='conv')(x), (), None)


class PooledDiscriminator(nn.Module):
    """Stand-in main discriminator: 8x8 average pooling, then one logit per face."""

    @nn.compact
    def __call__(self, x):
        b, s = x.shape[:2]
        pooled = x.reshape(b, 8, s // 8, 8, s // 8, x.shape[-1]).mean(axis=(2, 4))
        return nn.Dense(1)(pooled.reshape(b, -1))


@pytest.fixture(scope='module')
def setup():
    objective = Objective(noise='fixed', pyramid_loss_weight=0, perceptual_weight=0, style_weight=0,
                          identity_weight=0)
    generator = ConvRestorer(ModelConfig(out_size=SIZE))
    params = generator.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)))['params']
    rate = 2e-3
    networks = Networks(
        generator=generator, discriminator=PooledDiscriminator(), component=FacialComponentDiscriminator(),
        vgg=None, arcface=None,
        generator_optimizer=optimizers.generator_optimizer(rate, (), 0.5, jax.tree.map(lambda _: True, params)),
        discriminator_optimizer=optimizers.discriminator_optimizer(rate, (), 0.5, objective.net_d_reg_every),
        component_optimizer=optimizers.component_optimizer(rate, (), 0.5))
    state, noise = create_train_state(networks, jax.random.key(1), generator={'params': params, 'noise': {}})
    batch = {key: jnp.asarray(value, jnp.float32) for key, value in make_batch().items()}
    step = jax.jit(functools.partial(train_step, networks=networks, objective=objective))
    return state, FrozenVariables(noise=noise), batch, step


def run(setup, has_boxes=None, **changes):
    state, frozen, batch, step = setup
    batch = dict(batch, **changes)
    if has_boxes is not None:
        batch['has_boxes'] = jnp.asarray(has_boxes)
    return step(state, frozen, batch, jax.random.key(3))


def assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))


def random_boxes(seed):
    """Another plausible set of boxes: random corners, 20 to 120 px wide, inside the face."""
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, SIZE - 130, (3, 2))
    return np.concatenate([corners, corners + rng.uniform(20, 120, (3, 2))], axis=1).astype(np.float32)


def test_all_rows_with_boxes_is_the_step_without_the_mask(setup):
    ours, metrics = run(setup, [True, True])
    plain, plain_metrics = run(setup)
    assert_same(metrics, plain_metrics)
    assert_same(ours, plain)
    assert int(metrics['skipped']) == 0


def test_a_row_without_boxes_adds_nothing(setup):
    state, metrics = run(setup, [True, False])
    assert int(metrics['skipped']) == 0
    # Whatever the masked row's boxes, the whole step is the same to the bit: no gradient reaches its crops.
    moved = setup[2]['boxes'].at[1].set(random_boxes(0))
    moved_state, moved_metrics = run(setup, [True, False], boxes=moved)
    assert_same(moved_metrics, metrics)
    assert_same(moved_state, state)
    # The component terms are those of the first face alone (here as a batch of it twice, every row kept).
    batch = setup[2]
    _, alone = run(setup, [True, True], **{key: jnp.stack([value[0]] * 2) for key, value in batch.items()})
    for name in COMPONENT_TERMS + COMPONENT_D_TERMS:
        assert abs(float(metrics[name]) - float(alone[name])) <= RTOL * abs(float(alone[name])), name
    # ... and not those of both faces.
    _, both = run(setup, [True, True])
    assert all(abs(float(metrics[name]) - float(both[name])) > 1e-3 * abs(float(both[name]))
               for name in COMPONENT_TERMS)


def test_no_row_with_boxes_turns_the_component_losses_off(setup):
    state = setup[0]
    assert int(state.step) == 0
    new, metrics = run(setup, [False, False])
    assert int(metrics['skipped']) == 0
    assert all(np.isfinite(float(value)) for value in metrics.values())
    for name in COMPONENT_TERMS + COMPONENT_D_TERMS:
        assert float(metrics[name]) == 0, name
    # Zero gradients (their norms above) from the first step's zero moments: Adam leaves them where they were.
    assert_same(new.components, state.components)
    # Nothing depends on the boxes.
    other, other_metrics = run(setup, [False, False], boxes=jnp.asarray(np.stack([random_boxes(1), random_boxes(2)])))
    assert_same(other_metrics, metrics)
    assert_same(other, new)


def test_a_mask_of_the_wrong_shape_is_refused(setup):
    with pytest.raises(ValueError, match='row_mask must be'):
        run(setup, [True, False, True])
