"""A tiny GFPGAN for first contact and tests: 64 px faces, a narrow clean generator and discriminator, pixel,
pyramid and adversarial losses only. A few minutes on a 2-core CPU, no downloads.

    python train.py --config configs/tiny.py --workdir runs/tiny --config.data.path=examples/aligned

The component losses need 512 px faces (their crops are fixed at the recipe's size) and are off; the perceptual,
style and identity losses are off too, so that nothing is downloaded (their networks can be given random weights
with weights.vgg='random', weights.arcface='random' and a weight above 0). The degradation is the official one
scaled to 64 px faces: a small blur kernel and at most 4x downsampling.
"""
from configs import train_gfpgan_v1


def get_config():
    config = train_gfpgan_v1.get_config()
    config.model.arch = 'clean'
    config.model.out_size = 64
    config.model.channel_multiplier = 1
    config.model.narrow = 1 / 16  # 32 channels up to 32 px, 16 at 64 px
    config.model.num_style_feat = 64
    config.model.num_mlp = 2
    config.fix_decoder = False  # there is no pretrained decoder to keep
    config.weights.decoder = ''
    config.weights.arcface = ''
    config.weights.vgg = ''
    config.discriminator.narrow = 1 / 16
    config.discriminator.stddev_group = 4

    config.objective.pixel_weight = 1.0  # no perceptual loss: the pixel loss carries the restoration
    config.objective.perceptual_weight = 0.0
    config.objective.style_weight = 0.0
    config.objective.component_gan_weight = 0.0
    config.objective.comp_style_weight = 0.0
    config.objective.identity_weight = 0.0
    # The recipe's EMA (half-life of about 310 steps) would still be mostly the random start after a tiny run.
    config.objective.ema_decay = 0.95

    config.degradation.blur_kernel_size = 11
    config.degradation.blur_sigma = (0.1, 3.0)
    config.degradation.downsample_range = (1.0, 4.0)
    config.degradation.noise_range = (0.0, 10.0)

    config.data.path = 'examples/aligned'
    config.data.components = ''
    config.data.threads = 2
    config.batch_size = 8
    config.num_train_steps = 300
    config.milestones = ()
    config.checkpoint_every_steps = 100
    config.keep_checkpoints = 2
    config.log_every_steps = 10
    config.validation.every_steps = 100
    config.validation.degradation = 'training'  # the paper's test degradation (41 px blurs, 8x) erases 64 px faces
    config.validation.samples = 4
    return config
