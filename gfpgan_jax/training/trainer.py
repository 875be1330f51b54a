"""GFPGAN training from a config: data-parallel over every device of the job, resumable to the bit.

    python train.py --config configs/train_gfpgan_v1.py --workdir runs/v1 [--config.KEY=VALUE ...]

One program per step, compiled once: the batch's degradation (on the device) fused with `training.step.train_step`,
the batch split over the mesh's `data` axis, everything else replicated, the state's buffers donated. Step k's
randomness (the degradation and the decoder noise) is drawn from fold_in(key(seed), k), and the data iterator's
position is in every checkpoint, so a run that resumes from step k computes what the run that never stopped computed
after step k, on any number of devices or hosts.

The global batch is put in the order of the data (the order one host would read it in) before anything else, so
that the batch's rows, their degradations and the discriminator's minibatch groups do not depend on the number of
hosts either.
"""
import dataclasses
import functools
import json
import os
import signal
import time
import warnings

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gfpgan_jax.data.components import ComponentBoxes
from gfpgan_jax.data.degradations import CELEBA_TEST, DegradationConfig, degrade
from gfpgan_jax.data.pipeline import STATE_VERSION, FaceBatches
from gfpgan_jax.data.sources import open_faces
from gfpgan_jax.files.atomic import atomic_write
from gfpgan_jax.files.releases import DownloadError
from gfpgan_jax.models.options import ModelConfig
from gfpgan_jax.training import mesh as meshes
from gfpgan_jax.training import weights
from gfpgan_jax.training.checkpoints import Checkpoints
from gfpgan_jax.training.monitoring import Monitor, sample_grid
from gfpgan_jax.training.objective import Objective
from gfpgan_jax.training.optimizers import multistep_schedule
from gfpgan_jax.training.state import Networks, create_train_state
from gfpgan_jax.training.step import train_step
from gfpgan_jax.training.validation import Validation, read_faces

CHECKPOINTS_DIR = 'checkpoints'
CONFIG_FILE = 'config.json'
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# The paper's synthetic test degradation, or the training recipe's own.
VALIDATION_DEGRADATIONS = ('celeba_test', 'training')
# Shown beside the progress bar.
SUMMARY = ('l_g_total', 'l_d', 'images_per_s')
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Config keys that may change between a run and its resumption without changing what is computed.
BOOKKEEPING = ('num_train_steps', 'checkpoint_every_steps', 'keep_checkpoints', 'log_every_steps', 'tensorboard',
               'max_consecutive_skips', 'validation.', 'data.threads', 'data.prefetch_batches')


class TrainingError(ValueError):
    """A run that cannot start or go on, said in one line (a bad config value, data, weights)."""


class Diverged(RuntimeError):
    """Several steps in a row had a non-finite loss."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What a config says to train, independent of devices."""
    model: ModelConfig
    objective: Objective
    degradation: DegradationConfig
    networks: Networks
    dtype: object


def _tuples(section):
    # Command-line overrides and JSON give lists where the dataclasses want tuples.
    return {key: tuple(value) if isinstance(value, list) else value for key, value in dict(section).items()}


def build_recipe(config) -> Recipe:
    """The model, objective, degradation and networks of `config`, or a TrainingError naming the bad value."""
    try:
        model = ModelConfig.from_config(config.model)
        objective = Objective.from_config(config.objective)
        degradation = DegradationConfig(out_size=model.out_size, **_tuples(config.degradation))
        if config.dtype not in DTYPES:
            raise ValueError(f'dtype must be one of {", ".join(DTYPES)}, got {config.dtype!r}')
        if objective.uses_components and model.out_size < 512:
            raise ValueError(f'the facial component losses crop 512 px faces; with model.out_size '
                             f'{model.out_size} turn them off (objective.component_gan_weight=0, '
                             f'objective.comp_style_weight=0)')
        discriminator = dict(_tuples(config.discriminator))
        group = min(config.batch_size, discriminator.get('stddev_group', 4))
        if config.batch_size % group:
            raise ValueError(f'the discriminator groups the batch of {config.batch_size} in groups of '
                             f'min(batch_size, discriminator.stddev_group) = {group}, which must divide it')
        rates = config.learning_rates
        networks = Networks.build(model, objective, fix_decoder=config.fix_decoder,
                                  learning_rates=(rates.generator, rates.discriminator, rates.components),
                                  milestones=tuple(config.milestones), gamma=config.gamma,
                                  discriminator_options=discriminator, dtype=DTYPES[config.dtype])
    except (TypeError, ValueError) as error:
        raise TrainingError(f'config: {error}') from None
    return Recipe(model, objective, degradation, networks, DTYPES[config.dtype])


def _check_schedule(config):
    for name in ('num_train_steps', 'checkpoint_every_steps', 'log_every_steps', 'keep_checkpoints',
                 'max_consecutive_skips', 'seed'):
        value = config[name]
        least = 0 if name in ('num_train_steps', 'max_consecutive_skips', 'seed') else 1
        if not (isinstance(value, int) and value >= least):
            raise TrainingError(f'config: {name} must be an integer of at least {least}, got {value!r}')
    for name in ('every_steps', 'samples'):
        if not (isinstance(config.validation[name], int) and config.validation[name] >= 0):
            raise TrainingError(f'config: validation.{name} must be a non-negative integer')
    if not config.data.path:
        raise TrainingError('config: data.path must name the training faces (--config.data.path=FOLDER)')


def learning_rates(config, step):
    """The configured learning rates at `step` under the MultiStepLR schedule (the discriminator's before the
    lazy-regularisation correction of its optimizer)."""
    rates = config.learning_rates
    return {f'lr_{name}': float(multistep_schedule(rate, tuple(config.milestones), config.gamma)(step))
            for name, rate in (('g', rates.generator), ('d', rates.discriminator), ('components', rates.components))}


def data_order(sharding, batch_size, process_count):
    """Rows of the global batch in the order of the data: `order[i]` is the global row holding the i-th face.

    Host p of n reads the faces at positions p, p + n, p + 2n, ... of each global batch (the data pipeline's
    shards), and its rows fill the rows of its devices in order. One host reads them in position order.
    """
    rows = [[] for _ in range(process_count)]
    placement = sorted(sharding.devices_indices_map((batch_size,)).items(), key=lambda item: item[1][0].start or 0)
    for device, (index,) in placement:
        rows[device.process_index].extend(range(*index.indices(batch_size)))
    order = np.empty(batch_size, np.int32)
    for process, held in enumerate(rows):
        order[process::process_count] = held
    return order


def run_keys(seed):
    """The run's independent random streams: 'steps' (step k uses fold_in(it, k)), 'init' (the fresh networks)
    and 'frozen' (loss networks configured 'random')."""
    steps, init, frozen = jax.random.split(jax.random.key(seed), 3)
    return {'steps': steps, 'init': init, 'frozen': frozen}


def make_train_step(recipe: Recipe, mesh, seed, order):
    """The jitted step: (state, frozen, batch from FaceBatches, stop flags) -> (state, metrics).

    `stop flags` (one int per device) carry each host's wish to stop; their maximum comes back as metrics['stop'],
    so every host learns of it in the same step without a collective of its own.
    """
    identity_order = bool(np.all(order == np.arange(len(order))))
    steps_key = run_keys(seed)['steps']
    everywhere, split = meshes.replicated(mesh), meshes.batch_sharding(mesh)

    def step(state, frozen, batch, stop_flags):
        if not identity_order:
            # Left to itself XLA may keep the reordered batch in another layout, and then every reduction over it
            # runs in another order: the same split as on one host keeps the step the same to the rounding.
            batch = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x[order], split), batch)
        key = jax.random.fold_in(steps_key, state.step)
        degrade_key, step_key = jax.random.split(key)
        degraded = degrade(degrade_key, batch['gt'], batch['boxes'], batch['has_boxes'], config=recipe.degradation)
        degraded['has_boxes'] = batch['has_boxes']  # faces without boxes: out of the component losses
        state, metrics = train_step(state, frozen, degraded, step_key, networks=recipe.networks,
                                    objective=recipe.objective)
        metrics['stop'] = jnp.max(stop_flags)
        return state, metrics

    return jax.jit(step, in_shardings=(everywhere, everywhere, split, split), out_shardings=(everywhere, everywhere),
                   donate_argnums=0)


def resharded_data_state(saved, fresh):
    """The data position of `saved` (another job size's FaceBatches state) for this host's iterator, whose fresh
    state is `fresh`: the same number of global batches read. The pipeline's order is a function of the seed and
    the position in it alone, so only the reading position moves with the host count."""
    same = ('faces', 'seed')
    if saved.get('version') != STATE_VERSION or any(saved.get(key) != fresh[key] for key in same):
        raise TrainingError(f'the checkpoint\'s data position is for other data ({saved!r:.200}); resume with the '
                            f'same data.path and seed')
    if fresh['grain'] != {'next_index': 0}:
        raise TrainingError(f'cannot move the data position onto {fresh["shard_count"]} hosts: this grain version\'s '
                            f'iterator state ({fresh["grain"]}) is not the one this trainer knows')
    if saved['host_batch_size'] * saved['shard_count'] != fresh['host_batch_size'] * fresh['shard_count']:
        raise TrainingError('the checkpoint was written with another global batch_size; resume with the same one')
    batches = saved['batches']
    return {**fresh, 'batches': batches, 'grain': {'next_index': batches * fresh['host_batch_size']}}


def checkpoint_meta(config, model: ModelConfig):
    """The JSON a checkpoint keeps beside the arrays: the run's config and model options (export reads these),
    and the job's size."""
    return {'config': json.loads(config.to_json_best_effort()), 'model': json.loads(model.to_json()),
            'process_count': jax.process_count(), 'batch_size': config.batch_size}


def _abstract(tree, sharding):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


class Trainer:
    """One run of `config` in `workdir` on all the job's devices (the job already initialised: mesh.py)."""

    def __init__(self, config, workdir):
        _check_schedule(config)
        self.config = config
        self.workdir = os.path.abspath(workdir)
        self.recipe = build_recipe(config)
        self.mesh = meshes.data_mesh()
        try:
            self.host_batch = meshes.check_batch_size(config.batch_size, self.mesh)
        except ValueError as error:
            raise TrainingError(f'config: {error}') from None
        self.is_main = jax.process_index() == 0
        self.checkpoints = Checkpoints(os.path.join(self.workdir, CHECKPOINTS_DIR),
                                       every_steps=config.checkpoint_every_steps, keep=config.keep_checkpoints)
        self._stop_signal = None
        self._stopped_by = None
        self._saved_step = None
        self._changes = []

    # -- setting up ------------------------------------------------------------------------------------------------

    def _batches(self):
        config, recipe = self.config, self.recipe
        try:
            source = open_faces(config.data.path, recipe.model.out_size)
            components = None
            if recipe.objective.uses_components:
                if not config.data.components:
                    raise ValueError('the facial component losses need data.components, the landmark file of the '
                                     'faces (FFHQ_eye_mouth_landmarks_512.pth for FFHQ), or turn them off '
                                     '(objective.component_gan_weight=0, objective.comp_style_weight=0)')
                components = ComponentBoxes(config.data.components, recipe.model.out_size,
                                            landmark_size=config.data.landmark_size or None,
                                            eye_enlarge_ratio=config.data.eye_enlarge_ratio)
            with warnings.catch_warnings():
                if components is None:  # the recipe has no component losses: nothing to warn about
                    warnings.filterwarnings('ignore', 'no facial component boxes')
                return FaceBatches(source, self.host_batch, meshes.batch_sharding(self.mesh), components=components,
                                   seed=config.seed, threads=config.data.threads,
                                   prefetch_batches=config.data.prefetch_batches)
        except (OSError, ValueError) as error:
            raise TrainingError(f'data: {error}') from None

    def _fresh_state(self):
        """A new run's state and noise (from init_from or the configured pretrained weights), on the host."""
        config, networks = self.config, self.recipe.networks
        generator = weights.generator_variables(config.init_from, self.recipe.model, networks,
                                                decoder=config.weights.decoder)
        discriminator = weights.discriminator_variables(config.weights.discriminator, networks)
        components = weights.component_variables(config.weights.components, networks)
        create = jax.jit(functools.partial(create_train_state, networks))
        return create(run_keys(config.seed)['init'], generator=generator, discriminator=discriminator,
                      components=components)

    def _frozen(self, noise):
        config = self.config
        return weights.frozen_variables(noise, self.recipe.networks, self.recipe.model.out_size,
                                        vgg=config.weights.vgg, arcface=config.weights.arcface,
                                        key=run_keys(config.seed)['frozen'])

    def _meta(self):
        return checkpoint_meta(self.config, self.recipe.model)

    def _restore(self, step, batches):
        """The state, noise and data position of checkpoint `step`, onto this job's devices."""
        everywhere = meshes.replicated(self.mesh)
        state_shape, noise_shape = jax.eval_shape(
            functools.partial(create_train_state, self.recipe.networks), jax.random.key(0))
        restored = self.checkpoints.restore(step, _abstract(state_shape, everywhere),
                                            _abstract(noise_shape, everywhere))
        self._changes = self._changed_keys(restored.meta)
        mine = restored.data.get((jax.process_index(), jax.process_count()))
        fresh = batches.get_state()
        if mine is None or mine.get('host_batch_size') != fresh['host_batch_size']:
            mine = resharded_data_state(next(iter(restored.data.values())), fresh)
        try:
            batches.set_state(mine)
        except ValueError as error:
            raise TrainingError(f'checkpoint {step}: {error}') from None
        return restored.state, restored.noise

    def _changed_keys(self, meta):
        """The config keys that differ from the checkpoint's, bookkeeping aside."""
        saved, now = _flatten(meta.get('config', {})), _flatten(json.loads(self.config.to_json_best_effort()))
        return sorted(name for name in saved.keys() | now.keys()
                      if saved.get(name) != now.get(name) and not name.startswith(BOOKKEEPING))

    def _validation(self):
        """The validation set (held-out faces) or, without one, a preview set of training faces for the sample
        grids; None when neither is wanted."""
        config, recipe = self.config, self.recipe
        section = config.validation
        if not (section.every_steps and (section.path or section.samples)):
            return None, False
        if section.degradation not in VALIDATION_DEGRADATIONS:
            raise TrainingError(f'config: validation.degradation must be one of {", ".join(VALIDATION_DEGRADATIONS)}')
        # Unflipped: the scores compare each restored face with its ground truth as stored.
        degradation = dataclasses.replace(recipe.degradation if section.degradation == 'training' else CELEBA_TEST,
                                          out_size=recipe.model.out_size, use_hflip=False)
        options = dict(degradation=degradation, seed=config.seed, batch_size=section.batch_size,
                       samples=section.samples)
        try:
            if section.path:
                return Validation.from_folders(section.path, recipe.model.out_size, recipe.networks.generator,
                                               self.mesh, lq_path=section.lq_path, limit=section.max_faces or None,
                                               **options), True
            faces = read_faces(open_faces(config.data.path, recipe.model.out_size), section.samples)
            return Validation(faces, recipe.networks.generator, self.mesh, **options), False
        except (OSError, ValueError) as error:
            raise TrainingError(f'validation: {error}') from None

    # -- running ---------------------------------------------------------------------------------------------------

    def run(self):
        """Train up to config.num_train_steps; returns the step reached. Stops early (after a checkpoint) on
        SIGINT or SIGTERM; raises Diverged after config.max_consecutive_skips non-finite steps in a row."""
        config = self.config
        batches = self._batches()
        latest = self.checkpoints.latest_step()
        if latest is None:
            state, noise = meshes.replicate(self._fresh_state(), self.mesh)
            start = 0
            if self.is_main:
                with atomic_write(os.path.join(self.workdir, CONFIG_FILE)) as temp, open(temp, 'w') as f:
                    f.write(config.to_json_best_effort(indent=2))
        else:
            state, noise = self._restore(latest, batches)
            start = latest
            self._saved_step = latest
        frozen = meshes.replicate(self._frozen(noise), self.mesh)
        validation, held_out = self._validation()
        order = data_order(meshes.batch_sharding(self.mesh), config.batch_size, jax.process_count())
        train = make_train_step(self.recipe, self.mesh, config.seed, order)
        monitor = Monitor(self.workdir, total_steps=config.num_train_steps, start_step=start, enabled=self.is_main,
                          tensorboard=config.tensorboard)
        if start:
            monitor.say(f'resumed from step {start} ({self.checkpoints.path(start)})')
            if self._changes:
                monitor.say(f'warning: the config differs from the checkpoint\'s in {", ".join(self._changes)}; '
                            f'going on with the new values')
        previous = {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}
        try:
            step = self._loop(state, noise, frozen, batches, train, monitor, validation, held_out, start)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.checkpoints.close()
            monitor.close()
        return step

    def _on_signal(self, signum, frame):
        self._stop_signal = signum
        # A second one acts at once, as without this handler.
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)

    def _stop_here(self):
        # A single process need not wait for its flag to come back through a step.
        return jax.process_count() == 1 and self._stop_signal is not None

    def _stop_flags(self):
        local = np.full(len(self.mesh.local_devices), int(self._stop_signal is not None), np.int32)
        return jax.make_array_from_process_local_data(meshes.batch_sharding(self.mesh), local)

    def _save(self, step, state, noise, batches, force=False):
        if step == self._saved_step:
            return
        if self.checkpoints.save(step, state, noise, self._meta(), batches.get_state(), force=force):
            self._saved_step = step

    def _loop(self, state, noise, frozen, batches, train, monitor, validation, held_out, start):
        config = self.config
        if start >= config.num_train_steps:
            monitor.say(f'already at step {start} of {config.num_train_steps}: nothing to do')
        log = _Log(config, monitor, lambda: self.checkpoints.latest_step())
        step = start
        pending = None
        stop = False
        while step < config.num_train_steps and not stop:
            batch = next(batches)
            batch.pop('index')
            state, metrics = train(state, frozen, batch, self._stop_flags())
            step += 1
            monitor.advance()
            if pending is not None:  # the previous step's metrics, read while this one runs
                stop = log.record(*pending) or self._stop_here()
            pending = (step, metrics)
            self._save(step, state, noise, batches)
            if validation is not None and step % config.validation.every_steps == 0:
                self._validate(step, state, noise, validation, held_out, monitor)
        if pending is not None:
            stop = log.record(*pending) or stop
        self._save(step, state, noise, batches, force=True)
        self.checkpoints.wait()
        if stop:
            self._stopped_by = self._stop_signal or signal.SIGTERM
            name = signal.Signals(self._stop_signal).name if self._stop_signal else 'another host\'s signal'
            monitor.say(f'stopped at step {step} on {name}; checkpoint {self.checkpoints.path(step)} written; run the '
                        f'same command to resume')
        return step

    def _validate(self, step, state, noise, validation, held_out, monitor):
        scores, columns = validation.evaluate(state.generator_ema, noise)
        if held_out:
            monitor.scalars(step, {f'val_{name}': value for name, value in scores.items()})
            monitor.say(f'step {step}: validation PSNR {scores["psnr"]:.2f} dB (inputs {scores["psnr_input"]:.2f}), '
                        f'SSIM {scores["ssim"]:.4f} (inputs {scores["ssim_input"]:.4f})')
        monitor.image(step, sample_grid(columns))

    @property
    def stopped_by(self):
        """The signal that stopped the run early (SIGTERM when another host's did), or None."""
        return self._stopped_by


class _Log:
    """Each step's metrics, read one step late; every log_every_steps their means (and the learning rates and
    throughput) go to the monitor. Counts the non-finite steps in a row."""

    def __init__(self, config, monitor, latest_checkpoint):
        self.config, self.monitor = config, monitor
        self.latest_checkpoint = latest_checkpoint
        self.sums, self.count = {}, 0
        self.skipped_in_a_row = 0
        self.since = None  # (time, step) of the last log, from the first step on (its compilation left out)

    def record(self, step, metrics):
        """Account for step `step`; True when a host asked to stop."""
        values = meshes.to_host(metrics)
        stop = bool(values.pop('stop'))
        skipped = bool(values['skipped'])
        self.skipped_in_a_row = self.skipped_in_a_row + 1 if skipped else 0
        if skipped:
            self.monitor.say(f'step {step}: a loss is not finite; the update was skipped')
        limit = self.config.max_consecutive_skips
        if limit and self.skipped_in_a_row >= limit:
            # Skipped updates leave the state as it was, so every checkpoint holds finite weights.
            latest = self.latest_checkpoint()
            where = (f'step {latest}, {os.path.join(self.monitor.workdir, CHECKPOINTS_DIR, str(latest))}'
                     if latest is not None else 'none yet')
            raise Diverged(f'steps {step - limit + 1} to {step} all had a non-finite loss, so the run stops at step '
                           f'{step}; the last good checkpoint: {where}. Lower the learning rates or check the data')
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value)
        self.count += 1
        now = time.perf_counter()
        if self.since is None:
            self.since = (now, step)
        if step % self.config.log_every_steps == 0 or stop or step == self.config.num_train_steps:
            scalars = {name: total / self.count for name, total in self.sums.items()}
            scalars['skipped'] = self.sums.get('skipped', 0.0)
            scalars.update(learning_rates(self.config, step - 1))
            elapsed, steps = now - self.since[0], step - self.since[1]
            if steps > 0 and elapsed > 0:
                scalars['steps_per_s'] = steps / elapsed
                scalars['images_per_s'] = steps * self.config.batch_size / elapsed
            self.monitor.scalars(step, scalars, SUMMARY)
            self.sums, self.count = {}, 0
            self.since = (now, step)
        return stop


def _flatten(tree, prefix=''):
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f'{prefix}{key}.'))
        else:
            flat[f'{prefix}{key}'] = json.dumps(value)
    return flat


def run(config: ml_collections.ConfigDict, workdir):
    """Train; returns the exit status for the command line: 0 done, 128 + the signal's number when stopped by
    SIGINT or SIGTERM (after saving), 1 on divergence, 2 on a config, data or weights problem (a download that
    fails offline included)."""
    try:
        trainer = Trainer(config, workdir)
        trainer.run()
    except (TrainingError, weights.WeightsError, DownloadError) as error:
        print(f'error: {error}', flush=True)
        return 2
    except Diverged as error:
        print(f'error: {error}', flush=True)
        return 1
    return 128 + trainer.stopped_by if trainer.stopped_by else 0
