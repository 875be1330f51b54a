"""Fine-tuning a released clean GFPGAN (v1.3 / v1.4: the clean architecture, channel multiplier 2) on your faces.

    python train.py --config configs/train_gfpgan_clean.py --workdir runs/clean --config.data.path=my_faces \\
        --config.data.components=my_faces_landmarks.pth

The official project never published how v1.2-v1.4 were trained. This recipe continues the v1 recipe where it
ends, on the clean architecture:
- the generator starts from the release (`init_from`, '1.4' or '1.3' or a weights file) and its EMA from the same
  weights; the StyleGAN2 decoder stays frozen (`fix_decoder`, as in every official recipe): the prior that makes the
  faces realistic is kept, and a small data set cannot wear it away. Set fix_decoder=False to adapt the decoder
  too (a new domain, plenty of faces).
- the discriminators start from the released GFPGANv1 ones (StyleGAN2Discriminator at channel multiplier 1 and the
  three component discriminators), trained on the same FFHQ faces and degradations: a random discriminator would
  give a converged generator meaningless adversarial gradients until it caught up. With weights.discriminator=''
  and weights.components='' they start from random (discriminator.channel_multiplier=2 is then the natural width
  beside the clean generator).
- the learning rates are the v1 recipe's last phase (2e-3 halved twice: 5e-4) without further milestones, and the
  pyramid loss is off from the start (the v1 recipe drops it after 50k of its 800k iterations).
- everything else (losses, their weights, degradations, batch 12, EMA) is the v1 recipe's.
"""
from configs import gfpgan_clean, train_gfpgan_v1


def get_config():
    config = train_gfpgan_v1.get_config()
    config.model = gfpgan_clean.get_config().model  # clean, out 512, channel multiplier 2, as v1.2-v1.4
    config.init_from = '1.4'
    config.fix_decoder = True
    config.weights.decoder = ''  # the whole generator comes from init_from
    config.weights.discriminator = 'release'  # GFPGANv1_net_d.pth
    config.weights.components = 'release'  # GFPGANv1_net_d_{left_eye,right_eye,mouth}.pth
    config.discriminator.channel_multiplier = 1  # the released discriminator's width
    config.learning_rates.generator = 5e-4
    config.learning_rates.discriminator = 5e-4
    config.learning_rates.components = 5e-4
    config.milestones = ()
    config.objective.remove_pyramid_loss = 0
    config.num_train_steps = 100_000
    return config
