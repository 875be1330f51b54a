"""infer.py on video files: each restored into restored_videos/{name}[_{suffix}].mp4, one line for each that fails.

PyAV (the `video` extra) is imported only when there are videos to restore, so that photos need nothing more.
"""
import os

import cv2
import jax

from gfpgan_jax.cli.report import say
from gfpgan_jax.files.atomic import atomic_write

VIDEO_EXTENSIONS = ('.mp4', '.mov', '.avi', '.mkv', '.webm')
VIDEO_FOLDER = 'restored_videos'
# What can fail for one video without stopping the run, besides FFmpeg's refusals: odd data, memory.
PER_VIDEO_ERRORS = (ValueError, cv2.error, MemoryError, jax.errors.JaxRuntimeError)


def is_video(path):
    """Whether infer.py treats `path` as a video: by its extension (.mp4, .mov, .avi, .mkv, .webm)."""
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def video_output(output, path, suffix=None):
    name = os.path.splitext(os.path.basename(path))[0]
    return os.path.join(output, VIDEO_FOLDER, f'{name}{"" if suffix is None else f"_{suffix}"}.mp4')


def _one_line(error):
    if isinstance(error, MemoryError):
        return 'not enough memory to restore it'
    if isinstance(error, cv2.error):
        return f'OpenCV failed on it ({error.err})'
    return ' '.join(str(error).split())


def restore_videos(pipeline, paths, output, report=None, *, suffix=None, only_center_face=False, fidelity=None,
                   frames_per_batch=8):
    """Restore each video of `paths` with `pipeline` (an ImageRestorer) into `output`/restored_videos, each file
    appearing whole or not at all. Returns the failures, (path, one-line reason) each, and counts every video in
    `report` (a cli.report.Report) when given. Two videos that would write the same file: the second is skipped."""
    failures, targets = [], {}

    def fail(path, reason):
        failures.append((path, reason))
        if report is not None:
            report.error(f'{path}: {reason}')

    try:
        import av

        from gfpgan_jax.inference.video import restore_video
    except ImportError:
        for path in paths:
            fail(path, "restoring videos needs PyAV: pip install 'gfpgan-jax[video]'")
        return failures
    for path in paths:
        target = video_output(output, path, suffix)
        if target in targets:
            fail(path, f'skipped, its result would overwrite that of {targets[target]}')
            continue
        targets[target] = path
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with atomic_write(target) as temp:
                summary = restore_video(pipeline, path, temp, only_center_face=only_center_face, fidelity=fidelity,
                                        frames_per_batch=frames_per_batch)
        except av.error.FFmpegError as error:  # before OSError and ValueError, which some of them also are
            fail(path, f'FFmpeg cannot read or write it ({error.strerror or type(error).__name__})')
        except PER_VIDEO_ERRORS as error:
            fail(path, _one_line(error))
        except OSError as error:
            fail(path, f'cannot write {target}: {error.strerror or error}')
        else:
            if report is not None:
                report.restored_one(summary.faces)
            if not summary.faces:
                say(f'note: {path}: no face found in any frame; the video is written upscaled as it is')
    return failures
