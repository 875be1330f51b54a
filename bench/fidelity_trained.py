"""The fidelity control on trained networks, start to finish on made faces: the paper's recipe in miniature.

GFP-GAN's prior is a StyleGAN2 trained on faces; GFP-GAN then learns to drive it, the decoder kept fixed
(train_gfpgan_v1.yml: decoder_load_path, fix_decoder). The control blends the decoder's spatial modulation
between none (fidelity 0: the prior's face for the latent code alone) and the model's own (1). Official weights
cannot be fetched here, so this builds the whole chain small and measures what the control trades:

1. faces: made faces (bench/made_faces.py), `--train` to learn from and `--test` others to measure on;
2. prior: a StyleGAN2 (the clean decoder of configs/tiny.py's model and its discriminator) trained as StyleGAN2
   is (non-saturating logistic loss, lazy R1, Adam betas (0, 0.99), EMA), saved as the official decoder .pth;
3. gfpgan: `train.py --config configs/tiny.py` on the training faces with that decoder and fix_decoder, as the
   official recipe;
4. table: bench/fidelity.py on the test faces with the trained EMA generator.

    python bench/fidelity_trained.py --workdir runs/fidelity_trained     # about 40 min on a 2-core CPU

Each stage is skipped when its output is in --workdir already, so a rerun goes straight to the table.
"""
import argparse
import dataclasses
import functools
import json
import os
import sys

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/ and bench/

import fidelity  # noqa: E402 (bench/)
import made_faces  # noqa: E402 (bench/)
from configs import tiny  # noqa: E402
from gfpgan_jax.convert.generator import DECODER, export_state_dict  # noqa: E402
from gfpgan_jax.files.pth import save_pth  # noqa: E402
from gfpgan_jax.files.weights import load_weights, save_converted  # noqa: E402
from gfpgan_jax.models.discriminators import StyleGAN2Discriminator  # noqa: E402
from gfpgan_jax.models.generator import build_model  # noqa: E402
from gfpgan_jax.models.options import ModelConfig  # noqa: E402
from gfpgan_jax.models.stylegan2_clean import StyleGAN2GeneratorClean  # noqa: E402
from gfpgan_jax.training import losses, trainer  # noqa: E402
from gfpgan_jax.training.export import load_run_weights  # noqa: E402


def write_faces(folder, count, seed, size):
    if os.path.isdir(folder) and len(os.listdir(folder)) >= count:
        return
    made_faces.main(['--count', str(count), '--seed', str(seed), '--size', str(size), '--output', folder])


def read_folder(folder):
    names = sorted(os.listdir(folder))
    return np.stack([cv2.imread(os.path.join(folder, name))[..., ::-1] for name in names])


def decoder_of(config: ModelConfig):
    return StyleGAN2GeneratorClean(config.out_size, config.num_style_feat, config.num_mlp,
                                   config.channel_multiplier, config.narrow, config.sft_half)


def prior_step(state, real, key, *, generator, discriminator, g_opt, d_opt, r1_weight, r1_every, ema_decay):
    """One StyleGAN2 iteration: G against D, then D (lazy R1 every `r1_every`), then the EMA of G."""
    g_params, d_params, g_opt_state, d_opt_state, ema, step = state
    z_key, noise_key, z2_key, noise2_key = jax.random.split(key, 4)
    z = jax.random.normal(z_key, (real.shape[0], generator.num_style_feat))

    def g_loss(params):
        fake, _ = generator.apply({'params': params}, z, noise='random', rngs={'noise': noise_key})
        return losses.gan_loss(discriminator.apply({'params': d_params}, fake), True, 'wgan_softplus')

    l_g, grads = jax.value_and_grad(g_loss)(g_params)
    updates, g_opt_state = g_opt.update(grads, g_opt_state, g_params)
    g_params = optax.apply_updates(g_params, updates)
    ema = losses.ema_update(ema, g_params, ema_decay)

    z = jax.random.normal(z2_key, z.shape)
    fake, _ = generator.apply({'params': g_params}, z, noise='random', rngs={'noise': noise2_key})
    fake = jax.lax.stop_gradient(fake)

    def d_loss(params):
        return losses.discriminator_loss(discriminator.apply({'params': params}, real),
                                         discriminator.apply({'params': params}, fake))

    def r1(params):
        penalty, _ = losses.r1_penalty_and_pred(lambda x: discriminator.apply({'params': params}, x), real)
        return r1_weight / 2 * penalty * r1_every

    l_d, grads = jax.value_and_grad(d_loss)(d_params)
    # Lazy R1: the double backward pass only on its iterations.
    r1_grads = jax.lax.cond((step + 1) % r1_every == 0, jax.grad(r1), lambda p: jax.tree.map(jnp.zeros_like, p),
                            d_params)
    grads = jax.tree.map(jnp.add, grads, r1_grads)
    updates, d_opt_state = d_opt.update(grads, d_opt_state, d_params)
    d_params = optax.apply_updates(d_params, updates)
    return (g_params, d_params, g_opt_state, d_opt_state, ema, step + 1), {'l_g': l_g, 'l_d': l_d}


def train_prior(faces, config: ModelConfig, steps, batch_size, seed, path, samples_path):
    """Trains the decoder of `config` as an unconditional StyleGAN2 on `faces` (uint8 RGB) and saves its EMA
    where GFP-GAN's recipe reads the pretrained decoder from (official layout, under params_ema)."""
    generator = decoder_of(config)
    discriminator = StyleGAN2Discriminator(config.out_size, channel_multiplier=1, narrow=config.narrow,
                                           stddev_group=4)
    key = jax.random.key(seed)
    g_key, d_key, noise_key, key = jax.random.split(key, 4)
    z = jnp.zeros((1, config.num_style_feat))
    g_variables = generator.init({'params': g_key, 'noise': noise_key}, z, noise='random')
    d_params = discriminator.init(d_key, jnp.zeros((batch_size, config.out_size, config.out_size, 3)))['params']
    g_opt = optax.adam(2e-3, b1=0.0, b2=0.99, eps=1e-8)
    r1_every = 16
    d_opt = optax.adam(2e-3, b1=0.0, b2=0.99 ** (r1_every / (r1_every + 1)), eps=1e-8)
    g_params = g_variables['params']
    state = (g_params, d_params, g_opt.init(g_params), d_opt.init(d_params), g_params, jnp.zeros((), jnp.int32))
    step = jax.jit(functools.partial(prior_step, generator=generator, discriminator=discriminator, g_opt=g_opt,
                                     d_opt=d_opt, r1_weight=1.0, r1_every=r1_every, ema_decay=0.999))
    images = faces.astype(np.float32) / 127.5 - 1
    rng = np.random.default_rng(seed)
    progress = tqdm(range(steps), desc='prior', unit='step')
    for i in progress:
        batch = images[rng.integers(len(images), size=batch_size)]
        batch = np.where(rng.random((batch_size, 1, 1, 1)) < 0.5, batch, batch[:, :, ::-1])
        state, metrics = step(state, batch, jax.random.fold_in(key, i))
        if i % 50 == 0:
            progress.set_postfix(l_g=f'{float(metrics["l_g"]):.3f}', l_d=f'{float(metrics["l_d"]):.3f}')
    ema = state[4]
    samples, _ = generator.apply({'params': ema, 'noise': g_variables['noise']},
                                 jax.random.normal(jax.random.key(1), (16, config.num_style_feat)), noise='fixed')
    samples = np.asarray(jnp.clip((samples + 1) * 127.5, 0, 255).round()).astype(np.uint8)
    grid = np.concatenate([np.concatenate(list(samples[r * 8:(r + 1) * 8]), 1) for r in range(2)], 0)
    cv2.imwrite(samples_path, grid[..., ::-1])

    # The decoder's state dict in the official layout: our GFP-GAN variables with this decoder, exported, the
    # decoder's keys kept (so the file goes through the recipe's strict decoder_load_path loading unchanged).
    model = build_model(config)
    x = jnp.zeros((1, config.out_size, config.out_size, 3))
    variables = jax.jit(model.init)({'params': jax.random.key(0), 'noise': jax.random.key(0)}, x)
    variables = {'params': {**variables['params'], DECODER: ema},
                 'noise': {**variables['noise'], DECODER: g_variables['noise']}}
    prefix = DECODER + '.'
    state = {key[len(prefix):]: value for key, value in export_state_dict(config, variables).items()
             if key.startswith(prefix)}
    save_pth(state, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--workdir', required=True)
    p.add_argument('--train', type=int, default=3000, help='made faces to learn from')
    p.add_argument('--test', type=int, default=64, help='other made faces to measure on')
    p.add_argument('--prior-steps', type=int, default=4000)
    p.add_argument('--prior-batch', type=int, default=8)
    p.add_argument('--gfpgan-steps', type=int, default=1500)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--fidelities', default='0,0.25,0.5,0.75,1')
    args = p.parse_args(argv)

    config = tiny.get_config()
    model = ModelConfig.from_config(config.model)
    size = model.out_size
    os.makedirs(args.workdir, exist_ok=True)
    train_faces, test_faces = (os.path.join(args.workdir, 'faces', name) for name in ('train', 'test'))
    write_faces(train_faces, args.train, args.seed, size)
    write_faces(test_faces, args.test, args.seed + 1, size)

    prior = os.path.join(args.workdir, 'prior.pth')
    if not os.path.isfile(prior):
        train_prior(read_folder(train_faces), model, args.prior_steps, args.prior_batch, args.seed, prior,
                    os.path.join(args.workdir, 'prior_samples.png'))

    run = os.path.join(args.workdir, 'gfpgan')
    config.fix_decoder = True
    config.weights.decoder = prior
    config.data.path = train_faces
    config.num_train_steps = args.gfpgan_steps
    config.checkpoint_every_steps = 500
    config.validation.every_steps = 500
    config.seed = args.seed
    weights = os.path.join(args.workdir, 'gfpgan.safetensors')
    if not os.path.isfile(weights):
        if trainer.run(config, run):
            sys.exit('training GFP-GAN failed')
        save_converted(weights, *load_run_weights(run))

    # Measured on faces degraded as the recipe trains (unflipped): the paper's CelebA-Test protocol (41 px blurs,
    # 8x downsampling) would leave 8 px of a 64 px face.
    degradation = dataclasses.replace(trainer.build_recipe(config).degradation, use_hflip=False)
    table = fidelity.fidelity_table(*load_weights(weights), fidelity.read_faces(test_faces, args.test, size),
                                    [float(v) for v in args.fidelities.split(',')], degradation, seed=args.seed)
    print(f'{args.test} made faces (seed {args.seed + 1}), degraded as configs/tiny.py trains; prior '
          f'{args.prior_steps} steps, GFP-GAN {args.gfpgan_steps} steps')
    fidelity.print_table(table)
    with open(os.path.join(args.workdir, 'fidelity.json'), 'w') as file:
        json.dump(dict(vars(args), table=table), file, indent=1)


if __name__ == '__main__':
    main()
