"""Training GFPGAN v1 as the paper did: every value of the official options/train_gfpgan_v1.yml.

    python train.py --config configs/train_gfpgan_v1.py --workdir runs/v1 --config.data.path=datasets/ffhq/ffhq_512

The official trains on 4 GPUs with 3 faces each: here `batch_size` is the global batch (12), split over every
device of the job, and the discriminator's minibatch standard deviation keeps the official's groups of
min(4, 3) = 3 faces (`discriminator.stddev_group`) whatever the device count. The official's net_d_iters 1 and
net_d_init_iters 0 are the only schedule the step has; its validation on paired folders is validation.path and
validation.lq_path. Files the recipe starts from ('release' below) are downloaded into the cache on first use.
"""
import dataclasses

import ml_collections

from configs import gfpgan_v1
from gfpgan_jax.data.degradations import TRAINING
from gfpgan_jax.training.objective import Objective


def get_config():
    config = gfpgan_v1.get_config()  # network_g: GFPGANv1, out 512, channel multiplier 1, narrow 1, sft_half
    config.seed = 0  # manual_seed
    config.num_train_steps = 800_000  # total_iter
    config.batch_size = 12  # batch_size_per_gpu 3 x 4 GPUs
    config.dtype = 'float32'

    config.init_from = ''  # pretrain_network_g: ~ (a release version or a weights file to fine-tune)
    config.fix_decoder = True
    config.weights = ml_collections.ConfigDict(dict(
        decoder='release',  # decoder_load_path: StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth
        discriminator='',  # pretrain_network_d: ~
        components='',  # pretrain_network_d_{left_eye,right_eye,mouth}: ~
        arcface='release',  # pretrain_network_identity: arcface_resnet18.pth
        vgg='release',  # torchvision's vgg19-dcbb9e9d.pth, as basicsr's PerceptualLoss loads it
    ))

    config.discriminator = ml_collections.ConfigDict(dict(  # network_d: StyleGAN2Discriminator
        channel_multiplier=1, resample_kernel=(1, 3, 3, 1), narrow=1.0,
        stddev_group=3,  # the official's min(stddev_group 4, its per-GPU batch of 3)
    ))
    config.learning_rates = ml_collections.ConfigDict(dict(generator=2e-3, discriminator=2e-3, components=2e-3))
    config.milestones = (600_000, 700_000)  # MultiStepLR
    config.gamma = 0.5

    objective = dataclasses.asdict(Objective())  # the yml's loss weights are Objective's defaults
    objective['perceptual_layers'] = dict(objective['perceptual_layers'])
    config.objective = ml_collections.ConfigDict(objective)

    degradation = dataclasses.asdict(TRAINING)  # the yml's dataset options; out_size follows model.out_size
    del degradation['out_size']
    config.degradation = ml_collections.ConfigDict(degradation)

    config.data = ml_collections.ConfigDict(dict(
        path='datasets/ffhq/ffhq_512',  # dataroot_gt: a folder of faces, an LMDB folder, or tfds:NAME
        components='experiments/pretrained_models/FFHQ_eye_mouth_landmarks_512.pth',  # component_path
        landmark_size=512,  # the faces the landmark file was measured on
        eye_enlarge_ratio=1.4,
        threads=6,  # num_worker_per_gpu
        prefetch_batches=2,
    ))

    config.validation = ml_collections.ConfigDict(dict(
        path='',  # held-out ground-truth faces (the yml's datasets/faces/validation/reference); '' for none
        lq_path='',  # their degraded inputs, paired by sorted name; '' degrades them with `degradation`
        degradation='celeba_test',  # 'celeba_test' (the paper's test synthesis) or 'training'
        every_steps=5000,  # val_freq; also the sample grids' interval
        batch_size=8,
        max_faces=0,  # 0: all
        samples=4,  # faces in each DIR/samples/ grid
    ))

    config.checkpoint_every_steps = 5000  # save_checkpoint_freq
    config.keep_checkpoints = 5
    config.log_every_steps = 100  # print_freq
    config.tensorboard = True  # use_tb_logger
    config.max_consecutive_skips = 20  # non-finite steps in a row that stop the run
    return config
