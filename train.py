"""Training GFP-GAN data-parallel on a device mesh: not yet (it comes with the training issue)."""
import sys

if __name__ == '__main__':
    sys.exit('train.py: training is not there yet; see the README for what works today')
