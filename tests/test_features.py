"""Feature front-ends: agreement with librosa, batching/padding invariance, framing."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attn.features import functional as AF
from attn.features.audio import iter_windows
from attn.features.config import AudioFeatures
from attn.features.transforms import MFCC, AudioFrontend, LogMel


def _librosa_logmel(y: np.ndarray, cfg: AudioFeatures) -> np.ndarray:
    import librosa

    S = librosa.feature.melspectrogram(
        y=y, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
        n_mels=cfg.n_mels, fmin=cfg.f_min, fmax=cfg.f_max, power=cfg.power, center=cfg.center,
    )  # fmt: skip
    return librosa.power_to_db(S, ref=1.0, amin=cfg.amin, top_db=None)


@pytest.mark.parametrize(
    "clip, params",
    [
        ("fsdd/recordings/3_theo_7.wav", dict(sample_rate=8000, n_fft=256, hop_length=80, n_mels=40)),
        ("fsdd/recordings/9_yweweler_12.wav", dict(sample_rate=8000, n_fft=200, win_length=160, hop_length=64,
                                                   n_mels=32, f_min=50.0, f_max=3800.0)),
        ("gtzan_mini/audio/jazz.00000.wav", dict(sample_rate=22050, n_fft=2048, hop_length=512, n_mels=128)),
    ],
)  # fmt: skip
def test_logmel_matches_librosa_on_real_audio(shared_data, clip, params):
    y, sr = sf.read(shared_data / clip, dtype="float32")
    y = y[: 10 * sr]
    cfg = AudioFeatures(**params)
    assert sr == cfg.sample_rate
    ours = LogMel.from_config(cfg)(torch.from_numpy(y)).numpy()
    ref = _librosa_logmel(y, cfg)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 0.01  # dB


def test_mfcc_matches_librosa(shared_data):
    import librosa

    y, sr = sf.read(shared_data / "fsdd/recordings/5_lucas_20.wav", dtype="float32")
    cfg = AudioFeatures(kind="mfcc", sample_rate=8000, n_fft=256, hop_length=80, n_mels=40, n_mfcc=13)
    ours = MFCC.from_config(cfg)(torch.from_numpy(y)).numpy()
    S = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=256, hop_length=80, n_mels=40)
    ref = librosa.feature.mfcc(S=librosa.power_to_db(S, top_db=None), n_mfcc=13)
    assert np.abs(ours - ref).max() < 0.01


@pytest.mark.parametrize("chunk_bytes", [1, 3 * 8 * 129, 60 * 8 * 129, 1 << 30, None])
def test_chunked_mel_equals_one_pass(chunk_bytes):
    # Chunks of a few frames of one clip, of several whole clips, and one pass (also None, what
    # export uses) must agree, with chunk edges that do not divide the frame count.
    torch.manual_seed(0)
    wave = torch.randn(5, 3, 2001)
    window = torch.hann_window(256)
    fb = torch.rand(24, 129)
    one = torch.matmul(fb, AF.spectrogram(wave, window, 256, 80, True, 2.0))
    got = AF.mel_spectrogram(wave, window, fb, 256, 80, True, 2.0, chunk_bytes=chunk_bytes)
    assert got.shape == one.shape == (5, 3, 24, 26)
    torch.testing.assert_close(got, one, rtol=1e-5, atol=1e-5)


def test_db_uses_fixed_reference_not_clip_maximum():
    """A window cut from a longer clip has the same features as the same frames in the clip."""
    cfg = AudioFeatures(sample_rate=8000, n_fft=256, hop_length=128, n_mels=24)
    lm = LogMel.from_config(cfg)
    rng = np.random.default_rng(0)
    quiet = 0.01 * rng.standard_normal(4096).astype(np.float32)
    loud = np.concatenate([quiet, 0.9 * rng.standard_normal(4096).astype(np.float32)])
    a = lm(torch.from_numpy(quiet))[:, 2:20]
    b = lm(torch.from_numpy(loud))[:, 2:20]
    assert torch.allclose(a, b, atol=1e-3)


@pytest.mark.parametrize("kind", ["logmel", "mfcc", "spectrogram"])
def test_padded_batch_gives_each_clip_its_own_features(kind):
    cfg = AudioFeatures(kind=kind, sample_rate=8000, n_fft=256, hop_length=80, n_mels=32, n_mfcc=13)
    fe = AudioFrontend.from_config(cfg)
    rng = np.random.default_rng(1)
    clips = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (3000, 1234, 801, 80)]
    width = max(len(c) for c in clips)
    batch = torch.zeros(len(clips), width)
    for i, c in enumerate(clips):
        batch[i, : len(c)] = torch.from_numpy(c)
    lengths = torch.tensor([len(c) for c in clips])
    feats, flen = fe(batch, lengths)
    for i, c in enumerate(clips):
        alone, alen = fe(torch.from_numpy(c)[None], torch.tensor([len(c)]))
        assert int(flen[i]) == int(alen[0]) == alone.shape[-1]
        assert torch.allclose(feats[i, :, : flen[i]], alone[0], atol=1e-4)


@pytest.mark.parametrize("kind", ["logmel", "mfcc", "waveform"])
def test_a_constant_offset_does_not_change_the_features(kind):
    """A recording chain's DC offset (here 0.005 and -0.02, against speech-like amplitudes of
    ~0.1) leaves the features as they are; without remove_dc it moves them (so the test can fail)."""
    rng = np.random.default_rng(2)
    t = np.arange(8000) / 8000
    clip = (0.1 * np.sin(2 * np.pi * 440 * t) * np.hanning(8000) + 0.01 * rng.standard_normal(8000)).astype(np.float32)
    x = torch.from_numpy(clip)[None]
    n = torch.tensor([8000])
    for remove in (True, False):
        fe = AudioFrontend.from_config(AudioFeatures(kind=kind, sample_rate=8000, n_fft=256, hop_length=80, n_mels=32,
                                                     remove_dc=remove))  # fmt: skip
        clean = fe(x, n)[0]
        for offset in (0.005, -0.02):
            moved = fe(x + offset, n)[0]
            assert torch.allclose(clean, moved, atol=2e-3) == remove, (remove, offset)


def test_dc_removal_takes_each_window_mean_over_its_own_samples():
    """Only the valid samples make a window's mean, and its padding stays zero: a short window
    padded in a batch gives what it gives alone."""
    wave = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 7.0, 0.0, 0.0]])
    out = AF.remove_dc(wave, torch.tensor([4, 2]))
    assert torch.equal(out, torch.tensor([[-1.5, -0.5, 0.5, 1.5], [-1.0, 1.0, 0.0, 0.0]]))
    assert torch.equal(AF.remove_dc(torch.zeros(1, 3), torch.tensor([0])), torch.zeros(1, 3))  # no samples: no NaN


def test_model_files_from_before_dc_removal_keep_their_features():
    """A stored recipe without `remove_dc` is a model trained on windows with their offset: it
    must keep computing its features that way; a new recipe removes it."""
    from attn.pipelines.recipe.load import recipe_from_dict, recipe_to_dict, validate_recipe

    new = validate_recipe({"data": {"root": "sounds"}, "features": {"kind": "logmel"}}, source="r")
    assert new.features.remove_dc is True
    stored = recipe_to_dict(new)
    assert recipe_from_dict(stored).features.remove_dc is True  # a new model file names it
    del stored["features"]["remove_dc"]
    assert recipe_from_dict(stored).features.remove_dc is False


@pytest.mark.parametrize("kind", ["logmel", "mfcc", "spectrogram", "waveform"])
@pytest.mark.parametrize("center", [True, False])
def test_the_config_knows_the_window_geometry_the_frontend_gives(kind, center):
    """`window_steps` and `bins` (what build_model checks against a model's positions and the tune
    space's mask widths use) are the shape the front-end really gives one full window."""
    cfg = AudioFeatures(kind=kind, sample_rate=8000, frame_seconds=0.37, n_fft=256, hop_length=80, n_mels=32,
                        n_mfcc=13, center=center)  # fmt: skip
    n = cfg.frame_samples
    feats, steps = AudioFrontend.from_config(cfg)(torch.randn(1, n) * 0.1, torch.tensor([n]))
    assert feats.shape[1:] == (cfg.bins, cfg.window_steps) and int(steps[0]) == cfg.window_steps


def test_frontend_runs_in_float32_under_autocast():
    fe = AudioFrontend.from_config(AudioFeatures(sample_rate=8000, n_fft=256, hop_length=80, n_mels=32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats, _ = fe(torch.randn(2, 4000) * 0.1, torch.tensor([4000, 2000]))
    assert feats.dtype == torch.float32


def test_feature_config_rejects_inconsistent_values():
    with pytest.raises(ValueError, match="Nyquist"):
        AudioFeatures(sample_rate=8000, f_max=6000)
    with pytest.raises(ValueError, match="win_length"):
        AudioFeatures(n_fft=256, win_length=512)


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 400), frame=st.integers(1, 64), hop=st.integers(1, 80),
    cuts=st.lists(st.integers(1, 399), max_size=6),
)  # fmt: skip
def test_streamed_windows_equal_whole_signal_windows(n, frame, hop, cuts):
    x = np.arange(1, n + 1, dtype=np.float32)
    blocks = np.split(x, sorted({c for c in cuts if c < n}))
    got = list(iter_windows(iter(blocks), frame, hop))
    spans = AF.window_spans(n, frame, hop)
    assert [(s, length) for s, _, length in got] == spans
    if hop <= frame:  # windows overlap or touch: together they cover the whole signal
        assert spans[0][0] == 0 and spans[-1][0] + spans[-1][1] == n
    for s, w, length in got:
        assert w.shape == (frame,)
        assert np.array_equal(w[:length], x[s : s + length]) and not w[length:].any()


def test_window_spans_cover_the_signal_and_pad_the_last():
    assert AF.window_spans(0, 10, 5) == []
    assert AF.window_spans(7, 10, 5) == [(0, 7)]
    assert AF.window_spans(10, 10, 5) == [(0, 10)]
    assert AF.window_spans(23, 10, 5) == [(0, 10), (5, 10), (10, 10), (15, 8)]
