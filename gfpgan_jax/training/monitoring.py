"""What a person follows a training run by: a progress bar, TensorBoard scalars, DIR/metrics.jsonl and PNG grids
under DIR/samples/. Only process 0 of a job writes or draws; the others get a Monitor that does nothing.

metrics.jsonl holds one JSON object per line, each with `step` (the number of updates made) and the names of the
TensorBoard scalars. A resumed run first drops the lines of steps after its checkpoint (the killed run may have
logged past it), so the file reads as the history of the run that never stopped.
"""
import json
import os

import cv2
import numpy as np
from tqdm import tqdm

from gfpgan_jax.files.atomic import atomic_write

METRICS_FILE = 'metrics.jsonl'
SAMPLES_DIR = 'samples'
TENSORBOARD_DIR = 'tensorboard'


class Monitor:
    """Progress, scalars and images of one run in `workdir`, continuing from `start_step`.

    enabled: False on every process but 0; tensorboard: also write TensorBoard event files (tensorboardX).
    """

    def __init__(self, workdir, *, total_steps, start_step=0, enabled=True, tensorboard=True):
        self.workdir = workdir
        self.enabled = enabled
        self._writer = None
        self._bar = None
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self.metrics_path = os.path.join(workdir, METRICS_FILE)
        _drop_lines_after(self.metrics_path, start_step)
        if tensorboard:
            from tensorboardX import SummaryWriter
            # purge_step hides the events a killed run wrote after the checkpoint this run resumes from.
            self._writer = SummaryWriter(os.path.join(workdir, TENSORBOARD_DIR), purge_step=start_step + 1)
        self._bar = tqdm(total=total_steps, initial=start_step, unit='step', dynamic_ncols=True,
                         desc='training')

    def advance(self, steps=1):
        if self._bar is not None:
            self._bar.update(steps)

    def say(self, message):
        """A line of text above the progress bar."""
        if self.enabled:
            tqdm.write(message)

    def scalars(self, step, values, summary=()):
        """Record `values` ({name: float}) at `step`; the names in `summary` are shown beside the bar."""
        if not self.enabled:
            return
        record = {'step': int(step), **{name: _plain(value) for name, value in values.items()}}
        with open(self.metrics_path, 'a', encoding='utf-8') as f:
            f.write(json.dumps(record) + '\n')
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(name, value, step)
        shown = {name: f'{values[name]:.4g}' for name in summary if name in values}
        if shown and self._bar is not None:
            self._bar.set_postfix(shown, refresh=False)

    def image(self, step, grid, name='samples'):
        """Write the uint8 RGB `grid` as DIR/samples/{name}_{step:08d}.png (and to TensorBoard)."""
        if not self.enabled:
            return None
        folder = os.path.join(self.workdir, SAMPLES_DIR)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f'{name}_{int(step):08d}.png')
        with atomic_write(path) as temp:
            if not cv2.imwrite(temp, np.ascontiguousarray(grid[..., ::-1])):
                raise OSError(f'{path}: cannot write the image')
        if self._writer is not None:
            self._writer.add_image(name, grid, step, dataformats='HWC')
        return path

    def close(self):
        if self._writer is not None:
            self._writer.close()
        if self._bar is not None:
            self._bar.close()


def _plain(value):
    value = float(value)
    return value if np.isfinite(value) else str(value)  # JSON has no nan or inf


def _drop_lines_after(path, step):
    if not os.path.isfile(path):
        return
    with open(path, encoding='utf-8') as f:
        lines = f.readlines()
    kept = [line for line in lines if line.strip() and _step_of(line) <= step]
    if len(kept) != len(lines):
        with atomic_write(path) as temp, open(temp, 'w', encoding='utf-8') as f:
            f.writelines(kept)


def _step_of(line):
    try:
        return json.loads(line)['step']
    except (ValueError, KeyError, TypeError):
        return float('inf')  # a line cut short by a kill: dropped


def sample_grid(columns, gap=2):
    """uint8 RGB (rows x s, columns x s) grid: row i shows face i of each (n, s, s, 3) uint8 array in `columns`
    (degraded | restored | ground truth), with `gap` white pixels between faces."""
    n, size = columns[0].shape[:2]
    step = size + gap
    grid = np.full((n * step - gap, len(columns) * step - gap, 3), 255, np.uint8)
    for c, faces in enumerate(columns):
        for r, face in enumerate(faces):
            grid[r * step:r * step + size, c * step:c * step + size] = face
    return grid


def read_metrics(workdir):
    """The records of DIR/metrics.jsonl, in order."""
    with open(os.path.join(workdir, METRICS_FILE), encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]
