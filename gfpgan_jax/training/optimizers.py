"""The official GFPGAN optimizers in optax: Adam for each network with its betas, learning rate and MultiStepLR."""
import jax
import optax


def multistep_schedule(learning_rate, milestones, gamma):
    """basicsr's MultiStepLR as GFPGAN steps it: the rate is multiplied by `gamma` from iteration milestone + 1 on.

    basicsr steps its schedulers before every iteration but the first, so at (1-based) iteration i the scheduler
    has counted i - 1 = the number of updates optax has made so far.
    """
    return optax.piecewise_constant_schedule(learning_rate, {int(m): gamma for m in milestones})


def adam(learning_rate, b1, b2, milestones=(), gamma=0.5):
    """torch.optim.Adam (eps 1e-8 outside the square root, no weight decay) under the MultiStepLR schedule."""
    return optax.adam(multistep_schedule(learning_rate, milestones, gamma), b1=b1, b2=b2, eps=1e-8)


def generator_optimizer(learning_rate, milestones, gamma, trainable):
    """The generator's Adam, betas (0, 0.99); `trainable` (a pytree of bools like the parameters) freezes the rest
    (the official's `fix_decoder`: those parameters get no gradient, so Adam neither moves them nor keeps state)."""
    labels = jax.tree.map(lambda train: 'train' if train else 'frozen', trainable)
    return optax.multi_transform({'train': adam(learning_rate, 0.0, 0.99, milestones, gamma),
                                  'frozen': optax.set_to_zero()}, labels)


def discriminator_optimizer(learning_rate, milestones, gamma, reg_every):
    """The discriminator's Adam as the official builds it: beta2 0.99 ** (reg_every / (reg_every + 1)), StyleGAN2's
    lazy-regularisation correction (beta1 is 0 either way), at the configured learning rate.

    The official's quirk, kept: it also scales the learning rate by that ratio, but passes it as Adam's default
    while its parameter group names the configured rate, which torch takes instead; so the rate is unscaled.
    """
    return adam(learning_rate, 0.0, 0.99 ** (reg_every / (reg_every + 1)), milestones, gamma)


def component_optimizer(learning_rate, milestones, gamma):
    """Each facial component discriminator's Adam, betas (0.9, 0.99)."""
    return adam(learning_rate, 0.9, 0.99, milestones, gamma)
