"""Feature pipeline: settings, audio loading, and the spectrogram segments against scipy.signal.stft + np.rot90."""

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from rhemo.data.features import (AudioError, FeatureSettings, audio_to_segments, check_signal, file_to_segments,
                                 load_audio, magnitude_stft, segment_starts, stft_frame_count,
                                 window_array)

SR = 16000


def reference_segments(x, seconds=4.0, overlap=1.0):
    """Independent re-statement of the authors' pipeline, literally: pad, scipy stft, rot90, pointer loop."""
    seg = int(seconds * SR)
    if len(x) < seg:
        padded = np.zeros(seg)
        padded[:len(x)] = x
        x = padded
    feats = np.rot90(np.abs(scipy.signal.stft(x, window="hamming", nperseg=256, noverlap=128)[2]))
    dummy = np.rot90(np.abs(scipy.signal.stft(np.zeros(seg), window="hamming", nperseg=256, noverlap=128)[2]))
    length = dummy.shape[0]
    n = feats.shape[0]
    out = []
    for start in np.arange(0, n, int(np.round(length * overlap)), dtype=int):
        if start + length <= n:
            out.append(feats[start:start + length])
        elif n > length + length * overlap:
            out.append(feats[-length:])
    result = np.zeros((len(out), 512, 128), np.float32)
    for i, s in enumerate(out):
        result[i, :min(length, 512)] = s[:512, :128]
    return result


def noise(seconds, seed=0):
    return (np.random.default_rng(seed).standard_normal(int(round(seconds * SR))) * 0.1).astype(np.float32)


# --- settings -----------------------------------------------------------------------------------------------
def test_default_settings_give_the_reference_geometry():
    s = FeatureSettings()
    assert (s.segment_samples, s.hop_length, s.frames_per_segment, s.segment_step_frames) == (64000, 128, 501, 501)


def test_settings_round_trip_and_validation():
    s = FeatureSettings(segment_seconds=2.0, time_reversed=False)
    assert FeatureSettings.from_dict(s.to_dict()) == s
    assert FeatureSettings.from_dict({}) == FeatureSettings()
    with pytest.raises(ValueError, match="bogus"):
        FeatureSettings.from_dict({"bogus": 1, "n_fft": 256})
    with pytest.raises(ValueError, match="'n_fft'"):
        FeatureSettings.from_dict({"n_fft": "big"})
    with pytest.raises(ValueError, match="stft_overlap"):
        FeatureSettings(stft_overlap=256)
    with pytest.raises(ValueError, match="window"):
        FeatureSettings(window="no-such-window")
    with pytest.raises(ValueError, match="time_reversed"):
        FeatureSettings(time_reversed="yes")
    with pytest.raises(ValueError, match="segment_seconds"):
        FeatureSettings(segment_seconds=0.0)


@pytest.mark.parametrize("n", [256, 1000, 64000, 64001, 64127, 100000])
def test_frame_count_matches_scipy(n):
    frames = scipy.signal.stft(np.zeros(n), nperseg=256, noverlap=128)[2].shape[1]
    assert stft_frame_count(n, FeatureSettings()) == frames


# --- STFT ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [300, 64000, 70001, 160000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_magnitude_stft_equals_scipy(n, dtype):
    x = noise(n / SR, seed=n).astype(dtype)
    ref = np.abs(scipy.signal.stft(x, window="hamming", nperseg=256, noverlap=128)[2]).T
    ours = magnitude_stft(x, FeatureSettings())
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6 * ref.max())


def test_sine_magnitude_and_orientation_by_hand():
    # A bin-centred 1 kHz sine (bin 16 of 256 at 16 kHz) of amplitude 0.5 in the first 2 s, silence after.
    # 'spectrum' scaling divides by the window sum, so the bin holds 0.5 / 2 = 0.25. Rows are time-reversed:
    # the silent end comes first, the tone sits in the later rows.
    t = np.arange(4 * SR) / SR
    x = (0.5 * np.sin(2 * np.pi * 1000 * t) * (t < 2.0)).astype(np.float32)
    seg = audio_to_segments(x, FeatureSettings())
    assert seg.shape == (1, 512, 128)
    s = seg[0]
    assert s[10:240].max() < 1e-6                       # rows 0..249 ≈ frames 500..251: silence
    np.testing.assert_allclose(s[300:490, 16], 0.25, rtol=1e-3)
    assert np.all(s[300:490].argmax(axis=1) == 16)
    assert np.all(s[501:] == 0)                          # time padded 501 → 512 at the end


# --- segmentation against the literal reference -------------------------------------------------------------
@pytest.mark.parametrize("seconds,expected", [
    (1.0, 1),      # short: zero-padded to 4 s
    (4.0, 1),      # exactly one segment (501 frames)
    (6.0, 1),      # 751 frames ≤ 1002: the partial tail is dropped
    (9.0, 3),      # 1126 frames > 1002: two full windows + the tail (= the recording's start)
    (12.0, 3),     # 1501 frames: windows at 0 and 501, window at 1002 is partial → tail
    (192256 / SR, 3),  # 1503 frames = 3 × 501 exactly: three full windows, no partial, no tail
])
def test_segments_equal_reference_pipeline(seconds, expected):
    x = noise(seconds, seed=int(seconds * 10))
    ours = audio_to_segments(x, FeatureSettings())
    ref = reference_segments(x.astype(np.float64))
    assert ours.shape == (expected, 512, 128) and ours.dtype == np.float32
    assert ref.shape == ours.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6 * ref.max())


def test_tail_segment_is_the_recording_start():
    # 9 s → 1126 frames; the tail = reversed rows 625..1125 = frames 500..0, i.e. the first 4 s of the file.
    # Frames 0..499 only see samples < 64000, so they equal those of the file cut at 4 s.
    x = noise(9.0)
    tail = audio_to_segments(x, FeatureSettings())[-1]
    first_4s = audio_to_segments(x[:64000], FeatureSettings())[0]
    np.testing.assert_allclose(tail[1:501], first_4s[1:501], rtol=1e-5, atol=1e-7)
    assert not np.allclose(tail[0], first_4s[0])


def test_overlapping_segments_and_single_tail():
    s = FeatureSettings(segment_hop_seconds=2.0)
    assert s.segment_step_frames == 250  # round(250.5) = 250, as np.round
    # 1126 frames: full windows at 0, 250, 500; 750 and 1000 are partial; 1126 > 501 + 250.5 → one tail.
    assert segment_starts(1126, s) == [0, 250, 500, 625]
    assert segment_starts(700, s) == [0]          # 700 ≤ 751.5: no tail
    assert audio_to_segments(noise(9.0), s).shape == (4, 512, 128)


def test_no_time_reversal_keeps_frame_order():
    x = noise(4.0)
    fwd = audio_to_segments(x, FeatureSettings(time_reversed=False))[0]
    rev = audio_to_segments(x, FeatureSettings())[0]
    np.testing.assert_array_equal(fwd[:501], rev[:501][::-1])


def test_forward_time_segments_equal_scipy_frames():
    x = noise(6.0)
    ref = np.abs(scipy.signal.stft(x.astype(np.float64), window="hamming", nperseg=256, noverlap=128)[2]).T
    seg = audio_to_segments(x, FeatureSettings(time_reversed=False))
    assert seg.shape == (1, 512, 128)                     # 751 frames: the first 501 are kept
    np.testing.assert_allclose(seg[0, :501], ref[:501, :128], rtol=1e-4, atol=1e-6 * ref.max())


@pytest.mark.parametrize("name", ["hamming", "hann", "blackman"])
def test_window_array_equals_scipy(name):
    np.testing.assert_allclose(window_array(name, 256), scipy.signal.get_window(name, 256), rtol=0, atol=1e-12)


def test_other_geometry_pads_and_crops():
    s = FeatureSettings(n_fft=128, stft_overlap=64, time_frames=400, freq_bins=80, segment_seconds=2.0,
                        segment_hop_seconds=2.0)
    segs = audio_to_segments(noise(2.0), s)
    assert s.frames_per_segment == 501 and segs.shape == (1, 400, 80)  # time cropped 501 → 400, 65 bins → 80
    assert np.all(segs[0, :, 65:] == 0) and segs[0, :, :65].max() > 0


# --- loading and checks -------------------------------------------------------------------------------------
def test_load_stereo_44k_matches_librosa(tmp_path):
    librosa = pytest.importorskip("librosa")
    t = np.arange(int(1.5 * 44100)) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t)], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 44100, subtype="PCM_16")
    ours = load_audio(path, SR)
    ref, _ = librosa.load(path, sr=SR)
    assert ours.dtype == np.float32 and ours.ndim == 1
    assert ours.shape == ref.shape == (24000,)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_load_native_rate_is_not_resampled(tmp_path):
    x = (np.arange(1000) % 50 - 25).astype(np.int16) * 100
    sf.write(tmp_path / "a.wav", x, SR, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(tmp_path / "a.wav", SR), x.astype(np.float32) / 32768)


def test_unreadable_files_raise_audio_error(tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 3)
    with pytest.raises(AudioError) as info:
        load_audio(bad, SR)
    assert info.value.path == str(bad) and info.value.reason.startswith("unreadable")
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(tmp_path / "missing.wav", SR)


def test_check_signal_categories():
    s = FeatureSettings()
    for signal, category in [(np.zeros(0, np.float32), "empty"), (np.array([0.1, np.nan], np.float32), "non-finite"),
                             (np.full(100, 0.004, np.float32), "silent"), (np.zeros(100, np.float32), "silent")]:
        with pytest.raises(AudioError) as info:
            check_signal(signal, s, "x.wav")
        assert info.value.reason.startswith(category) and info.value.path == "x.wav"
    # A loud signal with a negative peak passes: the authors' signed max would have dropped it.
    check_signal(np.array([-0.5, 0.001, 0.0], np.float32), s)


def test_file_to_segments_end_to_end(tmp_path):
    x = noise(5.0)
    sf.write(tmp_path / "a.wav", x, SR, subtype="FLOAT")
    np.testing.assert_allclose(file_to_segments(tmp_path / "a.wav", FeatureSettings()),
                               audio_to_segments(x, FeatureSettings()))
    sf.write(tmp_path / "quiet.wav", np.zeros(SR, np.float32), SR)
    with pytest.raises(AudioError, match="silent"):
        file_to_segments(tmp_path / "quiet.wav", FeatureSettings())
