"""Made faces: aligned cartoon portraits drawn from random parameters, a stand-in for FFHQ where none is at hand.

Each face has its own geometry (head, eyes, brows, nose, mouth and hair: the "identity" here), colours, and fine
detail a degraded copy loses: skin grain, hair strands, iris rings, eyelashes. They are drawn 4x larger and
shrunk with area averaging, so edges are anti-aliased as in a photo. Aligned as FFHQ faces are (eyes on one line
at about 0.45 of the height, the mouth below the middle), so the paper's pipeline and crops apply unchanged.

    python bench/made_faces.py --count 2000 --size 64 --output runs/made_faces
"""
import argparse
import os

import cv2
import numpy as np

from gfpgan_jax.files.atomic import atomic_write

SKIN = np.array([[255, 224, 196], [240, 200, 160], [225, 172, 130], [190, 130, 90], [140, 90, 60], [95, 60, 40]])
HAIR = np.array([[20, 15, 10], [60, 40, 25], [110, 75, 40], [190, 150, 90], [160, 160, 160], [130, 40, 20]])
IRIS = np.array([[60, 40, 20], [90, 60, 30], [60, 110, 150], [70, 120, 80], [110, 110, 120]])


def _colour(rng, palette, spread=18):
    """A palette colour, varied a little; RGB ints for cv2's drawing calls."""
    colour = palette[rng.integers(len(palette))] + rng.normal(0, spread, 3)
    return tuple(int(c) for c in np.clip(colour, 0, 255))


def _shade(colour, factor):
    return tuple(int(np.clip(c * factor, 0, 255)) for c in colour)


def draw_face(rng, size=64):
    """One RGB uint8 (size, size, 3) face from the generator `rng`."""
    s = 4 * size  # drawn large, shrunk by area averaging
    u = s / 256  # drawing units: the geometry below is in 256ths of the face
    image = np.zeros((s, s, 3), np.float32)
    top, bottom = np.array(_colour(rng, np.array([[200, 210, 230], [90, 100, 120], [180, 170, 150]]), 40)), \
        np.array(_colour(rng, np.array([[120, 130, 150], [40, 45, 60], [220, 220, 210]]), 40))
    image[:] = np.linspace(top, bottom, s)[:, None, :]

    cx = 128 + rng.normal(0, 3)
    head_w, head_h = rng.uniform(72, 92), rng.uniform(96, 116)
    skin, hair = _colour(rng, SKIN), _colour(rng, HAIR)
    hair_len = rng.uniform(0.2, 1.1)  # how far down the hair falls, in head heights

    def pt(x, y):
        return int(round(x * u)), int(round(y * u))

    def ax(a, b):
        return max(1, int(round(a * u))), max(1, int(round(b * u)))

    # Hair behind the head, then strands over it: fine lines a blurred copy loses.
    cv2.ellipse(image, pt(cx, 120), ax(head_w + 12, head_h * (0.6 + hair_len * 0.5)), 0, 0, 360, hair, -1)
    cv2.rectangle(image, pt(cx - head_w - 12, 120), pt(cx + head_w + 12, 120 + hair_len * 120), hair, -1)
    cv2.ellipse(image, pt(cx, 260), ax(head_w * 1.1, 60), 0, 180, 360, _colour(rng, HAIR, 60), -1)  # shoulders
    cv2.ellipse(image, pt(cx, 134), ax(head_w, head_h), 0, 0, 360, skin, -1)
    for _ in range(int(rng.integers(60, 140))):
        x0 = cx + rng.uniform(-head_w - 10, head_w + 10)
        y0 = rng.uniform(134 - head_h - 12, 134 - head_h * 0.55)
        bend = rng.normal(0, 14)
        cv2.line(image, pt(x0, y0), pt(x0 + bend, y0 + rng.uniform(10, 40)),
                 _shade(hair, rng.uniform(0.6, 1.5)), max(1, int(u)), cv2.LINE_AA)

    eye_y, eye_dx = 116 + rng.normal(0, 3), rng.uniform(30, 40)
    eye_w, eye_h = rng.uniform(11, 17), rng.uniform(5, 9)
    iris = _colour(rng, IRIS, 20)
    brow_lift, brow_tilt, brow_thick = rng.uniform(10, 20), rng.normal(0, 6), rng.uniform(2, 6)
    for side in (-1, 1):
        ex = cx + side * eye_dx
        cv2.ellipse(image, pt(ex, eye_y), ax(eye_w, eye_h), 0, 0, 360, (245, 245, 240), -1, cv2.LINE_AA)
        r = min(eye_h, eye_w * 0.6)
        cv2.circle(image, pt(ex, eye_y), max(1, int(r * u)), iris, -1, cv2.LINE_AA)
        cv2.circle(image, pt(ex, eye_y), max(1, int(r * 0.75 * u)), _shade(iris, 1.4), max(1, int(u // 2)))
        cv2.circle(image, pt(ex, eye_y), max(1, int(r * 0.4 * u)), (10, 10, 10), -1, cv2.LINE_AA)
        cv2.circle(image, pt(ex + 2, eye_y - 2), max(1, int(1.2 * u)), (255, 255, 255), -1, cv2.LINE_AA)
        cv2.ellipse(image, pt(ex, eye_y), ax(eye_w, eye_h), 0, 180, 360, (30, 20, 15), max(1, int(1.5 * u)),
                    cv2.LINE_AA)
        for k in range(5):  # lashes
            a = np.pi * (1.15 + 0.7 * k / 4)
            x1, y1 = ex + eye_w * np.cos(a), eye_y + eye_h * np.sin(a)
            cv2.line(image, pt(x1, y1), pt(x1 + 3 * np.cos(a), y1 + 4 * np.sin(a)), (30, 20, 15),
                     max(1, int(u // 2)), cv2.LINE_AA)
        by = eye_y - brow_lift
        cv2.line(image, pt(ex - side * eye_w, by + side * brow_tilt * 0.3), pt(ex + side * eye_w, by - 2),
                 _shade(hair, 0.8), max(1, int(brow_thick * u)), cv2.LINE_AA)

    nose_len, nose_w = rng.uniform(18, 30), rng.uniform(6, 11)
    cv2.line(image, pt(cx + 2, eye_y + 6), pt(cx + 4, eye_y + nose_len), _shade(skin, 0.8), max(1, int(2 * u)),
             cv2.LINE_AA)
    cv2.ellipse(image, pt(cx, eye_y + nose_len + 2), ax(nose_w, 4), 0, 0, 180, _shade(skin, 0.7),
                max(1, int(2 * u)), cv2.LINE_AA)

    mouth_y, mouth_w, mouth_open = eye_y + nose_len + rng.uniform(18, 26), rng.uniform(14, 26), rng.uniform(1, 8)
    lips = _shade(_colour(rng, np.array([[200, 90, 90], [170, 80, 80], [140, 70, 70]])), 1.0)
    cv2.ellipse(image, pt(cx, mouth_y), ax(mouth_w, mouth_open + 3), 0, 0, 360, lips, -1, cv2.LINE_AA)
    cv2.ellipse(image, pt(cx, mouth_y), ax(mouth_w * 0.85, mouth_open * 0.6), 0, 0, 360, (60, 20, 25), -1,
                cv2.LINE_AA)
    if mouth_open > 4:
        cv2.ellipse(image, pt(cx, mouth_y - mouth_open * 0.3), ax(mouth_w * 0.7, mouth_open * 0.25), 0, 0, 360,
                    (235, 235, 225), -1, cv2.LINE_AA)

    # Skin grain and a soft light from one side: detail and shading the prior has to learn.
    light = np.linspace(rng.uniform(0.85, 1.0), rng.uniform(1.0, 1.15), s)[None, :, None]
    image = image * light + rng.normal(0, 6, (s, s, 1))
    small = cv2.resize(np.clip(image, 0, 255), (size, size), interpolation=cv2.INTER_AREA)
    return np.round(small).astype(np.uint8)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--count', type=int, default=2000)
    p.add_argument('--size', type=int, default=64)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--output', required=True, help='folder for {index:05d}.png')
    args = p.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for index in range(args.count):
        with atomic_write(os.path.join(args.output, f'{index:05d}.png')) as path:
            cv2.imwrite(path, draw_face(rng, args.size)[..., ::-1])


if __name__ == '__main__':
    main()
