"""Video: a clip made here (the bundled portrait moving a pixel a frame, a sine tone) comes back with its frames,
frame rate, duration and audio, each frame's face restored as the photo pipeline restores that frame; memory does not
grow with the clip's length; bad files fail on one line.

Figures: restored frames against the photo pipeline on the same decoded frames, PSNR over the face after x264
(crf 18): 40.4 dB (>= 35 required), where the plainly upscaled frame is 8.8 dB from them (< 25 required).
"""
import os
import tracemalloc

import av
import cv2
import numpy as np
import pytest

import official
from gfpgan_jax.cli import infer as infer_cli
from gfpgan_jax.cli.video import VIDEO_FOLDER, is_video, restore_videos
from gfpgan_jax.inference.pipeline import ImageRestorer
from gfpgan_jax.inference.restorer import FaceRestorer
from gfpgan_jax.inference.video import FaceTracks, restore_video
from parity_utils import detection_rows, randomize, state_dict_numpy

PHOTO = os.path.join(os.path.dirname(__file__), '..', 'examples', 'photos', 'grace_hopper.jpg')
FACE = np.float32([[113, 98.5], [152.5, 97.5], [131.5, 122.5], [119, 138], [145, 137.5]])  # in PHOTO
RATE = 12
SAMPLE_RATE = 16000
WIDTH, HEIGHT = 240, 296
FRAMES = 2  # per window


class MovingFaceDetector:
    """Finds the photo's face where `clip_frames` moved it: one pixel left in each call (frame) after the first."""

    def __init__(self):
        self.calls = 0

    def detect_faces(self, image, conf_threshold):
        self.calls += 1
        return detection_rows([FACE - [self.calls - 1, 0]])


def clip_frames(count):
    photo = cv2.imread(PHOTO)
    return [np.ascontiguousarray(photo[:HEIGHT, k:k + WIDTH]) for k in range(count)]


def make_clip(path, count, audio_codec='aac'):
    """An H.264 clip of `count` frames at RATE fps with a 440 Hz tone as long as the video."""
    with av.open(str(path), 'w') as out:
        video = out.add_stream('libx264', rate=RATE, options={'crf': '10'})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, 'yuv420p'
        audio = out.add_stream(audio_codec, rate=SAMPLE_RATE)
        audio.layout = 'mono'
        for image in clip_frames(count):
            out.mux(video.encode(av.VideoFrame.from_ndarray(image, format='bgr24')))
        tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE * count // RATE) / SAMPLE_RATE)
        # AAC takes planar floats, PCM interleaved 16-bit numbers.
        samples, sample_format = (tone.astype(np.float32), 'fltp') if audio_codec == 'aac' else \
            ((tone * 32767).astype(np.int16), 's16')
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format=sample_format, layout='mono')
            frame.sample_rate, frame.pts = SAMPLE_RATE, start
            out.mux(audio.encode(frame))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    return str(path)


@pytest.fixture(scope='module')
def restorer():
    module = randomize(official.gfpganv1_clean_arch.GFPGANv1Clean(
        out_size=32, num_style_feat=16, narrow=0.125, channel_multiplier=2, fix_decoder=False,
        input_is_latent=True, different_w=True, sft_half=True), seed=2)
    return FaceRestorer.from_state_dict(state_dict_numpy(module), noise='random', seed=4)


def pipeline_for(restorer):
    """Faces go two frames at a time (FRAMES) in batches of 4, padded to 2: a shape the tests share, so it compiles
    once."""
    return ImageRestorer(restorer, MovingFaceDetector(), parser=None, upscale=2, batch_size=4)


def decoded(path):
    with av.open(path) as container:
        return [frame.to_ndarray(format='bgr24') for frame in container.decode(video=0)]


def packets(path, kind):
    with av.open(path) as container:
        stream = getattr(container.streams, kind)[0]
        return [(p.pts, bytes(p)) for p in container.demux(stream) if p.size]


def frame_times(path):
    """(start, length) of each frame in seconds."""
    with av.open(path) as container:
        return [(frame.pts * frame.time_base, frame.duration * frame.time_base) for frame in container.decode(video=0)]


def psnr(a, b):
    return 10 * np.log10(255 ** 2 / np.mean((a.astype(float) - b.astype(float)) ** 2))


def test_clip_comes_back_whole_with_its_faces_restored(restorer, tmp_path):
    clip = make_clip(tmp_path / 'clip.mov', 10)
    out = str(tmp_path / 'out.mp4')
    summary = restore_video(pipeline_for(restorer), clip, out, frames_per_batch=FRAMES, progress=False)
    assert summary == (10, 10, 'copied')
    with av.open(clip) as source, av.open(out) as result:
        s, r = source.streams.video[0], result.streams.video[0]
        assert r.frames == s.frames == 10 and r.average_rate == s.average_rate == RATE
        assert (r.width, r.height) == (2 * WIDTH, 2 * HEIGHT) and r.codec_context.name == 'h264'
        assert abs(result.duration - source.duration) < 1000  # microseconds; MP4 and MOV round the end differently
        assert result.streams.audio[0].codec_context.name == 'aac'
    assert frame_times(out) == frame_times(clip)  # every frame shown when and as long as the source's
    assert packets(out, 'audio') == packets(clip, 'audio')  # remuxed, not re-encoded

    # Each frame's face as the photo pipeline restores that decoded frame alone: the face is tracked, so every
    # frame's face has number 0 and the same random noise as a photo's first face.
    frames, restored = decoded(clip), decoded(out)
    top, bottom, left, right = 2 * 80, 2 * 160, 2 * 90, 2 * 175  # the face, at 2x
    for k, (frame, ours) in enumerate(zip(frames, restored)):
        detector = MovingFaceDetector()
        detector.calls = k
        expected = ImageRestorer(restorer, detector, upscale=2).enhance(frame).image
        plain = cv2.resize(frame, (2 * WIDTH, 2 * HEIGHT), interpolation=cv2.INTER_LANCZOS4)
        face = np.s_[top:bottom, left:right]
        assert psnr(ours[face], expected[face]) >= 35, k
        assert psnr(plain[face], expected[face]) < 25, k  # so the match above says the face was restored


def test_a_face_keeps_its_number_from_frame_to_frame():
    tracks = FaceTracks()
    first = np.stack([FACE, FACE + [150, 0]])
    assert tracks.number(first).tolist() == [0, 1]
    assert tracks.number(first[::-1] + 3).tolist() == [1, 0]  # moved a little, listed the other way round
    assert tracks.number(first[:1] + [0, 60]).tolist() == [2]  # moved far: a new face
    assert tracks.number(np.zeros((0, 5, 2))).tolist() == []


def peak_bytes(restorer, clip, target):
    tracemalloc.start()
    try:
        restore_video(pipeline_for(restorer), clip, target, frames_per_batch=FRAMES, progress=False)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_length(restorer, tmp_path):
    short, long = make_clip(tmp_path / 'short.mp4', 6), make_clip(tmp_path / 'long.mp4', 24)
    peak_bytes(restorer, short, str(tmp_path / 'warm.mp4'))  # compiles first
    peaks = [peak_bytes(restorer, clip, str(tmp_path / f'{n}.mp4')) for n, clip in (('s', short), ('l', long))]
    frame = 2 * WIDTH * 2 * HEIGHT * 3
    assert peaks[1] < peaks[0] + 2 * frame, [p / frame for p in peaks]  # 4x the frames, not 4x the memory


def test_audio_that_mp4_cannot_hold_is_converted(restorer, tmp_path):
    clip = make_clip(tmp_path / 'pcm.mkv', 4, audio_codec='pcm_s16le')
    out = str(tmp_path / 'out.mp4')
    summary = restore_video(pipeline_for(restorer), clip, out, frames_per_batch=FRAMES, progress=False)
    assert summary.audio == 'converted to AAC'
    with av.open(out) as result:
        audio = result.streams.audio[0]
        assert audio.codec_context.name == 'aac' and audio.sample_rate == SAMPLE_RATE
        seconds = sum(frame.samples for frame in result.decode(audio=0)) / SAMPLE_RATE
        assert abs(seconds - 4 / RATE) < 2048 / SAMPLE_RATE  # AAC's priming and last frame
    assert len(decoded(out)) == len(decoded(clip)) == 4  # Matroska does not store its frame count


def test_a_sideways_phone_clip_comes_back_upright(restorer, tmp_path):
    """A phone stores a portrait clip sideways, with a display matrix saying how to turn it."""
    clip = str(tmp_path / 'phone.mp4')
    upright = clip_frames(2)
    with av.open(clip, 'w') as out:
        video = out.add_stream('libx264', rate=RATE, options={'crf': '10'})
        video.width, video.height, video.pix_fmt = HEIGHT, WIDTH, 'yuv420p'
        video.set_display_rotation(90)  # shown turned a quarter counterclockwise
        for image in upright:
            out.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(image, -1)),
                                                            format='bgr24')))
        out.mux(video.encode(None))
    out = str(tmp_path / 'out.mp4')
    assert restore_video(pipeline_for(restorer), clip, out, frames_per_batch=FRAMES, progress=False).audio == 'none'
    first = decoded(out)[0]
    plain = cv2.resize(upright[0], (2 * WIDTH, 2 * HEIGHT), interpolation=cv2.INTER_LANCZOS4)
    assert first.shape == plain.shape and psnr(first, plain) > psnr(first, plain[::-1, ::-1]) + 3  # not upside down


def test_restore_videos_writes_each_or_says_why_not(restorer, tmp_path):
    inputs = tmp_path / 'in'
    inputs.mkdir()
    good = make_clip(inputs / 'good.mp4', 3)
    (inputs / 'broken.mkv').write_bytes(b'\x1a\x45\xdf\xa3 not really a video')
    (inputs / 'good.webm').write_bytes(b'')
    out = tmp_path / 'out'
    failures = restore_videos(pipeline_for(restorer), [good, str(inputs / 'broken.mkv'), str(inputs / 'good.webm')],
                              str(out), frames_per_batch=FRAMES)
    assert [path for path, _ in failures] == [str(inputs / 'broken.mkv'), str(inputs / 'good.webm')]
    assert 'FFmpeg cannot read' in failures[0][1] and 'would overwrite' in failures[1][1]
    assert all('\n' not in reason for _, reason in failures)
    assert os.listdir(out / VIDEO_FOLDER) == ['good.mp4']  # no half-written file left
    assert is_video('a/B.MKV') and not is_video('a/b.jpg')


def test_infer_routes_videos(restorer, tmp_path, monkeypatch):
    monkeypatch.setattr(infer_cli.FaceRestorer, 'from_pretrained', classmethod(lambda cls, *a, **k: restorer))
    monkeypatch.setattr(infer_cli.FaceDetector, 'from_pretrained', classmethod(lambda cls: MovingFaceDetector()))
    monkeypatch.setattr(infer_cli.FaceParser, 'from_pretrained', classmethod(lambda cls: None))
    monkeypatch.setattr(infer_cli, 'fetch_all', lambda downloads: None)
    inputs = tmp_path / 'in'
    inputs.mkdir()
    make_clip(inputs / 'clip.mp4', 3)
    (inputs / 'photo.jpg').write_bytes(open(PHOTO, 'rb').read())
    out = tmp_path / 'out'
    assert infer_cli.main(['-i', str(inputs), '-o', str(out), '-v', '1.4', '--no-compile-cache']) == 0
    assert os.listdir(out / VIDEO_FOLDER) == ['clip.mp4'] and os.listdir(out / 'restored_imgs') == ['photo.jpg']
    with av.open(str(out / VIDEO_FOLDER / 'clip.mp4')) as result:
        assert result.streams.video[0].frames == 3 and result.streams.audio
