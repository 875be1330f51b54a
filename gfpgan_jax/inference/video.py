"""Video files in, video files out: every frame's faces restored as in a photo, streamed through PyAV.

    restore_video(pipeline, 'clip.mov', 'restored.mp4')    # pipeline: an ImageRestorer

Frames are decoded, restored and encoded a window at a time (`frames_per_batch`), so memory follows the window and
not the length of the clip. The faces of a window's frames are restored together, in batches of the pipeline's
batch size padded to its few compiled shapes. A face followed from frame to frame (by where it is) keeps its number,
and with it its random noise: the details the noise draws stay put instead of flickering. Every frame keeps its
timestamp, so the frame rate (constant or not) and the duration are the source's; the audio is copied packet for
packet where MP4 holds its codec, else re-encoded as AAC. The output is H.264 in MP4, `upscale` times the size.
"""
import fractions
import os
from typing import NamedTuple

import av
import cv2
import numpy as np
from tqdm import tqdm

# Audio codecs an MP4 file holds as they are; others (PCM, Vorbis, ...) are re-encoded.
MP4_AUDIO = ('aac', 'mp3', 'alac', 'ac3', 'eac3', 'opus', 'flac')
# x264's constant-quality setting: visually lossless for most footage, a few times smaller than the raw frames.
DEFAULT_CRF = 18
# A face whose centre moved less than this part of its size since the last frame is the same face.
SAME_FACE_DISTANCE = 0.5


class VideoSummary(NamedTuple):
    frames: int
    faces: int  # restored, counted in every frame
    audio: str  # 'copied', 'converted to AAC' or 'none'


class FaceTracks:
    """Numbers faces across frames: a face near one of the last frame's faces gets its number, others new ones."""

    def __init__(self):
        self.previous = np.zeros((0, 3))  # rows (x, y, size) of the last frame's faces
        self.numbers = np.zeros(0, np.int64)
        self.next_number = 0

    def number(self, landmarks):
        """(n,) numbers for the faces with these (n, 5, 2) landmarks, the nearest pairs matched first."""
        centres = landmarks.mean(axis=1)
        # Eye centre to mouth centre: a size that does not change as the head turns sideways.
        sizes = np.linalg.norm(landmarks[:, :2].mean(axis=1) - landmarks[:, 3:].mean(axis=1), axis=1)
        faces = np.concatenate([centres, sizes[:, None]], axis=1)
        numbers = np.full(len(faces), -1, np.int64)
        if len(faces) and len(self.previous):
            distance = np.linalg.norm(faces[:, None, :2] - self.previous[None, :, :2], axis=2)
            distance /= np.maximum(faces[:, None, 2], 1.0)
            for flat in np.argsort(distance, axis=None):
                face, previous = np.unravel_index(flat, distance.shape)
                if distance[face, previous] > SAME_FACE_DISTANCE:
                    break
                if numbers[face] < 0 and self.numbers[previous] not in numbers:
                    numbers[face] = self.numbers[previous]
        fresh = numbers < 0
        numbers[fresh] = np.arange(self.next_number, self.next_number + fresh.sum())
        self.next_number += int(fresh.sum())
        self.previous, self.numbers = faces, numbers
        return numbers


def _upright(frame):
    """A decoded frame as BGR uint8, turned as its display matrix says (phones store portrait clips sideways)."""
    image = frame.to_ndarray(format='bgr24')
    turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


class _FrameRestorer:
    """A window of frames through the pipeline: faces found and aligned per frame, restored together, pasted back
    per frame."""

    def __init__(self, pipeline, only_center_face, fidelity=None):
        self.pipeline = pipeline
        self.only_center_face = only_center_face
        self.fidelity = fidelity
        self.tracks = FaceTracks()

    def restore(self, images):
        """The frames restored, and how many faces they held."""
        aligned = [self.pipeline.align(image, self.only_center_face) for image in images]
        numbers = np.concatenate([self.tracks.number(frame.landmarks) for frame in aligned])
        restored = self.pipeline.restore_faces(np.concatenate([frame.crops for frame in aligned]), self.fidelity,
                                               numbers)
        per_frame = np.split(restored, np.cumsum([len(frame.crops) for frame in aligned])[:-1])
        return ([self.pipeline.paste(image, faces, frame.transforms)
                 for image, faces, frame in zip(images, per_frame, aligned)], len(numbers))


def _even(image):
    """H.264 in 4:2:0 needs even sides: an odd one gets its last row or column repeated."""
    rows, columns = image.shape[0] % 2, image.shape[1] % 2
    return cv2.copyMakeBorder(image, 0, rows, 0, columns, cv2.BORDER_REPLICATE) if rows or columns else image


def _named_layout(layout):
    """A channel layout the AAC encoder takes: the source's, or for channels without named positions (PCM in
    Matroska, say) mono or stereo (more channels are mixed down)."""
    if not layout.name.endswith('channels'):
        return layout.name
    return 'mono' if layout.nb_channels == 1 else 'stereo'


class _Writer:
    """The output file: H.264 video with the source's timestamps, and the source's audio.

    The streams are made with the first frame, whose size the video takes; audio packets that come before it wait
    (a window of frames' worth at most)."""

    def __init__(self, output, audio, crf):
        self.output = output
        self.audio_in = audio
        self.crf = crf
        self.video = None
        self.audio_out = None
        self.resampler = None
        self.waiting = []
        self.audio = 'none' if audio is None else 'copied' if audio.codec_context.name in MP4_AUDIO \
            else 'converted to AAC'

    def _open(self, height, width, time_base, rate):
        self.video = self.output.add_stream('libx264', rate=rate, options={'crf': str(self.crf)})
        self.video.height, self.video.width, self.video.pix_fmt = height, width, 'yuv420p'
        self.video.codec_context.time_base = time_base
        if self.audio == 'copied':
            self.audio_out = self.output.add_stream_from_template(self.audio_in)
        elif self.audio_in is not None:
            context = self.audio_in.codec_context
            layout = _named_layout(context.layout)
            self.audio_out = self.output.add_stream('aac', rate=context.sample_rate, layout=layout)
            self.resampler = av.AudioResampler(format='fltp', layout=layout, rate=context.sample_rate)
        for packet in self.waiting:
            self.audio_packet(packet)
        self.waiting = None

    def audio_packet(self, packet):
        if self.video is None:
            self.waiting.append(packet)
        elif self.resampler is None:
            if packet.dts is not None:  # else the demuxer's end-of-stream marker, not data
                packet.stream = self.audio_out
                self.output.mux(packet)
        else:
            for frame in packet.decode():
                for resampled in self.resampler.resample(frame):
                    resampled.pts = None  # the encoder numbers the samples
                    self.output.mux(self.audio_out.encode(resampled))

    def frame(self, image, source_frame, index, rate):
        image = _even(image)
        time_base = source_frame.time_base or 1 / rate
        if self.video is None:
            self._open(*image.shape[:2], time_base, rate)
        frame = av.VideoFrame.from_ndarray(image, format='bgr24')
        # A frame without a timestamp (some AVI files) is placed by its number at the nominal rate.
        frame.pts = source_frame.pts if source_frame.pts is not None else round(index / rate / time_base)
        frame.time_base = time_base
        if source_frame.duration:  # the last frame's, which sets the clip's length
            frame.duration = source_frame.duration
        self.output.mux(self.video.encode(frame))

    def close(self):
        if self.resampler is not None:
            for resampled in self.resampler.resample(None):
                self.output.mux(self.audio_out.encode(resampled))
            self.output.mux(self.audio_out.encode(None))
        self.output.mux(self.video.encode(None))


def restore_video(pipeline, source, target, *, only_center_face=False, fidelity=None, frames_per_batch=8,
                  crf=DEFAULT_CRF, progress=True):
    """Restore the faces of every frame of the video file `source` into `target`, an MP4 file written as it goes
    (write it through `files.atomic.atomic_write` so that no half-written file is left). `pipeline` is an
    ImageRestorer: its detector, parser, upsampler, upscale and batch size are used. `fidelity` as in
    `inference.fidelity`. Returns a VideoSummary; a ValueError for a file with no video in it, av.error.FFmpegError
    for one FFmpeg cannot read.
    """
    if isinstance(frames_per_batch, bool) or not isinstance(frames_per_batch, int) or frames_per_batch < 1:
        raise ValueError(f'frames_per_batch must be a whole number >= 1, got {frames_per_batch!r}')
    with av.open(os.fspath(source)) as container:
        if not container.streams.video:
            raise ValueError('no video stream in it')
        video = container.streams.video[0]
        video.thread_type = 'AUTO'
        rate = video.average_rate or video.guessed_rate or fractions.Fraction(25)
        with av.open(os.fspath(target), 'w', format='mp4') as output, \
                tqdm(total=video.frames or None, unit='frame', desc=os.path.basename(os.fspath(source)),
                     disable=not progress) as bar:
            audio = container.streams.audio[0] if container.streams.audio else None
            writer = _Writer(output, audio, crf)
            frames = _FrameRestorer(pipeline, only_center_face, fidelity)
            window, count, faces = [], 0, 0

            def flush():
                images, found = frames.restore([_upright(frame) for frame in window])
                for offset, (image, frame) in enumerate(zip(images, window)):
                    writer.frame(image, frame, count - len(window) + offset, rate)
                bar.update(len(window))
                window.clear()
                return found

            streams = [video] + ([audio] if audio is not None else [])
            for packet in container.demux(streams):
                if packet.stream is not video:
                    writer.audio_packet(packet)
                    continue
                for frame in packet.decode():
                    window.append(frame)
                    count += 1
                    if len(window) == frames_per_batch:
                        faces += flush()
            if window:
                faces += flush()
            if not count:
                raise ValueError('no frame in its video stream could be decoded')
            writer.close()
    return VideoSummary(count, faces, writer.audio)
