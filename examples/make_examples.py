"""Make the bundled example faces: public-domain portraits shipped by matplotlib and scikit-image, aligned to
the 512x512 FFHQ face template from hand-placed landmarks, then degraded (downscaled and JPEG-compressed) the way
old photos are. Run once; the outputs are committed in examples/aligned/."""
import os

import cv2
import matplotlib.cbook
import numpy as np
import skimage.data

# The five-point 512x512 template of the official face helper: eye centres, nose tip, mouth corners.
FACE_TEMPLATE_512 = np.array([[192.98, 239.95], [318.90, 240.19], [256.63, 314.02], [201.26, 371.41],
                              [313.09, 371.15]], np.float32)

PORTRAITS = {
    'grace_hopper': (cv2.imread(matplotlib.cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)),
                     [[226, 197], [305, 195], [263, 245], [238, 276], [290, 275]]),
    'astronaut': (skimage.data.astronaut()[..., ::-1],
                  [[202, 116], [246, 116], [225, 136], [207, 148], [243, 147]]),
}


def align(image, landmarks):
    affine = cv2.estimateAffinePartial2D(np.float32(landmarks), FACE_TEMPLATE_512, method=cv2.LMEDS)[0]
    return cv2.warpAffine(image, affine, (512, 512), borderMode=cv2.BORDER_CONSTANT, borderValue=(135, 133, 132))


def degrade(face, scale=4, quality=60):
    small = cv2.resize(face, (512 // scale, 512 // scale), interpolation=cv2.INTER_AREA)
    small = cv2.imdecode(cv2.imencode('.jpg', small, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)
    return cv2.resize(small, (512, 512), interpolation=cv2.INTER_LINEAR)


if __name__ == '__main__':
    out_dir = os.path.join(os.path.dirname(__file__), 'aligned')
    for name, (image, landmarks) in PORTRAITS.items():
        cv2.imwrite(os.path.join(out_dir, f'{name}.png'), degrade(align(np.ascontiguousarray(image), landmarks)))
