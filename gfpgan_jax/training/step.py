"""One GFPGAN training iteration as a pure function: the official `GFPGANModel.optimize_parameters` in JAX.

The order is the official's: the generator's update against the discriminators as they are, the EMA of the new
generator, the discriminator's update (with the lazy R1 penalty every `net_d_reg_every` iterations) on the
generated faces of this iteration, then the facial component discriminators' updates on their crops. The
official's `net_d_iters` 1 and `net_d_init_iters` 0 are the only schedule: every iteration updates everything.

The step sees the global batch: under `jax.jit` with the batch sharded over a mesh's data axis, every mean over
the batch (and so every gradient) is the mean over all devices, the data-parallel average of the design. Faces
without eye and mouth boxes (`has_boxes` False) stay in the batch, shapes being static, but add nothing to the
component losses, which are means over the faces that have boxes (the masked mean over the global batch is still
the data-parallel one).
"""
import jax
import jax.numpy as jnp
import optax

from gfpgan_jax.ops.roi_align import crop_facial_components
from gfpgan_jax.training import losses
from gfpgan_jax.training.objective import Objective
from gfpgan_jax.training.state import COMPONENTS, FrozenVariables, Networks, TrainState


def _components_of(boxes):
    """(b, 3, 4) boxes (left eye, right eye, mouth; x1, y1, x2, y2) -> the three (b, 4) arrays."""
    return boxes[:, 0], boxes[:, 1], boxes[:, 2]


def _global_norm(tree):
    return optax.tree.norm(jax.tree.map(lambda g: g.astype(jnp.float32), tree))


def _update(optimizer, grads, opt_state, params):
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def _generator_terms(params, state, frozen, batch, key, networks, objective):
    """The generator's losses (the official's loss_dict names) and what the discriminators' updates reuse."""
    iteration = state.step + 1
    lq, gt = batch['lq'], batch['gt']
    restored = networks.generator.apply({'params': params, 'noise': frozen.noise}, lq, noise=objective.noise,
                                        rngs={'noise': key})
    output = restored.image
    terms = {}
    if objective.pixel_weight > 0:
        terms['l_g_pix'] = losses.l1_loss(output, gt, objective.pixel_weight)
    terms.update(losses.pyramid_loss(restored.rgbs, gt, iteration, objective.pyramid_loss_weight,
                                     objective.remove_pyramid_loss))
    if networks.vgg is not None:
        extract = lambda images: networks.vgg.apply(frozen.vgg, images)  # noqa: E731
        perceptual, style = losses.perceptual_loss(
            extract(output), extract(gt), dict(objective.perceptual_layers), objective.perceptual_weight,
            objective.style_weight, objective.perceptual_criterion)
        terms.update({name: value for name, value in (('l_g_percep', perceptual), ('l_g_style', style))
                      if value is not None})
    fake_pred = networks.discriminator.apply({'params': state.discriminator}, output)
    terms['l_g_gan'] = losses.gan_loss(fake_pred, True, 'wgan_softplus', loss_weight=objective.gan_weight)

    crops = None
    if networks.component is not None:
        has_boxes = batch['has_boxes']
        crops = (crop_facial_components(output, *_components_of(batch['boxes'])),
                 crop_facial_components(gt, *_components_of(batch['boxes'])))
        fake_feats, real_feats = [], []
        for name, fake, real in zip(COMPONENTS, *crops):
            variables = {'params': state.components[name]}
            pred, feats = networks.component.apply(variables, fake, return_feats=True)
            terms[f'l_g_gan_{name}'] = losses.gan_loss(
                pred, True, 'vanilla', loss_weight=objective.component_gan_weight, row_mask=has_boxes)
            fake_feats.append(feats)
            real_feats.append(networks.component.apply(variables, real, return_feats=True)[1])
        if objective.comp_style_weight > 0:
            terms['l_g_comp_style_loss'] = losses.component_style_loss(fake_feats, real_feats,
                                                                       objective.comp_style_weight, has_boxes)
    if networks.arcface is not None:
        terms['l_identity'] = losses.identity_loss(lambda faces: networks.arcface.apply(frozen.arcface, faces),
                                                   output, gt, objective.identity_weight)
    return sum(terms.values()), (terms, output, crops)


def _discriminator_update(state, gt, output, networks, objective):
    """The main discriminator's losses, R1 on its iterations, and its update: (params, opt_state, metrics)."""
    discriminate = networks.discriminator.apply

    def adversarial(params):
        real_pred = discriminate({'params': params}, gt)
        fake_pred = discriminate({'params': params}, output)
        return losses.discriminator_loss(real_pred, fake_pred), (real_pred, fake_pred)

    def regularisation(params):
        penalty, real_pred = losses.r1_penalty_and_pred(lambda images: discriminate({'params': params}, images), gt)
        return losses.lazy_r1_loss(penalty, real_pred, objective.r1_reg_weight, objective.net_d_reg_every)

    (l_d, (real_pred, fake_pred)), grads = jax.value_and_grad(adversarial, has_aux=True)(state.discriminator)
    # Lazy regularisation: the penalty's double backward pass runs only on its iterations.
    l_d_r1, r1_grads = jax.lax.cond(
        (state.step + 1) % objective.net_d_reg_every == 0,
        lambda params: jax.value_and_grad(regularisation)(params),
        lambda params: (jnp.zeros((), l_d.dtype), jax.tree.map(jnp.zeros_like, params)),
        state.discriminator)
    grads = jax.tree.map(jnp.add, grads, r1_grads)
    params, opt_state = _update(networks.discriminator_optimizer, grads, state.discriminator_opt,
                                state.discriminator)
    metrics = {'l_d': l_d, 'l_d_r1': l_d_r1, 'real_score': jnp.mean(real_pred), 'fake_score': jnp.mean(fake_pred),
               'grad_norm_d': _global_norm(grads)}
    return params, opt_state, metrics


def _component_updates(state, crops, has_boxes, networks, objective):
    """Each facial component discriminator's loss and update, on the faces that have boxes: (params, opt_states,
    metrics)."""
    params, opt_states, metrics = {}, {}, {}
    for name, fake, real in zip(COMPONENTS, *crops):
        def loss(p, fake=fake, real=real):
            fake_pred, _ = networks.component.apply({'params': p}, fake)
            real_pred, _ = networks.component.apply({'params': p}, real)
            return losses.component_discriminator_loss(real_pred, fake_pred, objective.consistent_component_loss,
                                                       row_mask=has_boxes)

        value, grads = jax.value_and_grad(loss)(state.components[name])
        params[name], opt_states[name] = _update(networks.component_optimizer, grads, state.components_opt[name],
                                                 state.components[name])
        metrics[f'l_d_{name}'] = value
        metrics[f'grad_norm_d_{name}'] = _global_norm(grads)
    return params, opt_states, metrics


def train_step(state: TrainState, frozen: FrozenVariables, batch, key, *, networks: Networks, objective: Objective):
    """One iteration: (new state, metrics).

    batch: 'lq' and 'gt' (b, s, s, 3) in [-1, 1]; 'boxes' (b, 3, 4), the left eye, right eye and mouth boxes
    (x1, y1, x2, y2, pixels of gt), needed when the recipe has component discriminators; 'has_boxes' (b,) bool,
    optional (absent: every face has boxes), which rows' boxes are real. The component terms (l_g_gan_<part>,
    l_g_comp_style_loss, l_d_<part>) and the component discriminators' gradients are means over those rows, 0 when
    there are none. key: this iteration's randomness (the decoder noise). If any loss is not finite, nothing is
    updated (the step still counts) and metrics['skipped'] is 1.
    """
    if 'has_boxes' not in batch:
        # Every flag True, hidden from XLA, which would fold a constant mask into plain means (an ulp away in places):
        # the same program as training's, so the parity test with the official, which passes no flags, covers it.
        batch = {**batch, 'has_boxes': jax.lax.optimization_barrier(jnp.ones(batch['lq'].shape[:1], bool))}
    (l_g_total, (terms, output, crops)), g_grads = jax.value_and_grad(_generator_terms, has_aux=True)(
        state.generator, state, frozen, batch, key, networks, objective)
    generator, generator_opt = _update(networks.generator_optimizer, g_grads, state.generator_opt, state.generator)
    generator_ema = losses.ema_update(state.generator_ema, generator, objective.ema_decay)

    output = jax.lax.stop_gradient(output)
    discriminator, discriminator_opt, d_metrics = _discriminator_update(state, batch['gt'], output, networks,
                                                                        objective)
    components, components_opt, c_metrics = state.components, state.components_opt, {}
    if networks.component is not None:
        crops = jax.tree.map(jax.lax.stop_gradient, crops)
        components, components_opt, c_metrics = _component_updates(state, crops, batch['has_boxes'], networks,
                                                                   objective)

    metrics = {**terms, 'l_g_total': l_g_total, 'grad_norm_g': _global_norm(g_grads), **d_metrics, **c_metrics}
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(value)) for value in metrics.values()]))
    updated = TrainState(step=state.step + 1, generator=generator, generator_ema=generator_ema,
                         generator_opt=generator_opt, discriminator=discriminator,
                         discriminator_opt=discriminator_opt, components=components, components_opt=components_opt)
    kept = state.replace(step=state.step + 1)
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), updated, kept)
    metrics['skipped'] = (~finite).astype(jnp.int32)
    return new_state, metrics
