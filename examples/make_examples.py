"""Make the bundled examples from public-domain portraits shipped by matplotlib and scikit-image, degraded
(downscaled and JPEG-compressed) the way old photos are:

- examples/photos/: the whole photos at half size, for the whole-image mode;
- examples/aligned/: each face aligned onto the 512x512 FFHQ template from hand-placed landmarks, for --aligned.

Run once; the outputs are committed."""
import os

import cv2
import matplotlib.cbook
import numpy as np
import skimage.data

from gfpgan_jax.inference.alignment import align_faces

HERE = os.path.dirname(__file__)
PORTRAITS = {  # BGR photo, and its face's eye centres, nose tip and mouth corners
    'grace_hopper': (cv2.imread(matplotlib.cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)),
                     [[226, 197], [305, 195], [263, 245], [238, 276], [290, 275]]),
    'astronaut': (np.ascontiguousarray(skimage.data.astronaut()[..., ::-1]),
                  [[202, 116], [246, 116], [225, 136], [207, 148], [243, 147]]),
}


def jpeg(image, quality=60):
    return cv2.imdecode(cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)


def degrade_face(face, scale=4):
    small = jpeg(cv2.resize(face, (512 // scale, 512 // scale), interpolation=cv2.INTER_AREA))
    return cv2.resize(small, (512, 512), interpolation=cv2.INTER_LINEAR)


if __name__ == '__main__':
    for folder in ('photos', 'aligned'):
        os.makedirs(os.path.join(HERE, folder), exist_ok=True)
    for name, (photo, landmarks) in PORTRAITS.items():
        half = cv2.resize(photo, (photo.shape[1] // 2, photo.shape[0] // 2), interpolation=cv2.INTER_AREA)
        cv2.imwrite(os.path.join(HERE, 'photos', f'{name}.jpg'), half, [cv2.IMWRITE_JPEG_QUALITY, 70])
        face = align_faces(photo, np.float32([landmarks]))[0][0]
        cv2.imwrite(os.path.join(HERE, 'aligned', f'{name}.png'), degrade_face(face))
