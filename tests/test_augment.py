"""Training augmentations: shapes, padding kept at zero, what each one changes, determinism with
a seed, and that none of them runs at evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attn.features import augment as A


def _batch(b=4, n=1600, seed=0):
    g = torch.Generator().manual_seed(seed)
    wave = torch.randn(b, n, generator=g)
    lengths = torch.tensor([n, n // 2, n // 4, 7][:b])
    wave = wave * (torch.arange(n)[None, :] < lengths[:, None])
    return wave, lengths


def test_time_shift_rolls_valid_samples_only():
    wave, lengths = _batch()
    torch.manual_seed(0)
    out = A.time_shift(wave, lengths, 0.25)
    assert out.shape == wave.shape
    for r, n in enumerate(lengths.tolist()):
        assert torch.all(out[r, n:] == 0)  # padding stays silence
        # a circular roll keeps the multiset of samples
        assert torch.allclose(out[r, :n].sort().values, wave[r, :n].sort().values)
    assert not torch.equal(out, wave)


def test_add_noise_hits_the_requested_snr():
    wave, lengths = _batch(b=2, n=16000)
    lengths = torch.tensor([16000, 16000])
    torch.manual_seed(0)
    out = A.add_noise(wave, lengths, (20.0, 20.0), prob=1.0)
    noise = out - wave
    snr = 10 * torch.log10(wave.square().mean(1) / noise.square().mean(1))
    assert torch.allclose(snr, torch.full((2,), 20.0), atol=0.3)
    torch.manual_seed(0)
    assert torch.equal(A.add_noise(wave, lengths, (20.0, 20.0), prob=0.0), wave)


def test_background_mix_at_snr_and_padding_untouched():
    wave, lengths = _batch(b=3, n=8000)
    bank = torch.randn(2, 3000)
    torch.manual_seed(1)
    out = A.mix_background(wave, lengths, bank, (10.0, 10.0), prob=1.0)
    for r, n in enumerate(lengths.tolist()):
        assert torch.all(out[r, n:] == 0)
        added = out[r, :n] - wave[r, :n]
        if n > 100:
            snr = 10 * torch.log10(wave[r, :n].square().mean() / added.square().mean())
            assert abs(float(snr) - 10.0) < 0.1


def test_speed_perturb_changes_length_and_pitch():
    sr = 8000
    t = torch.arange(sr) / sr
    wave = torch.sin(2 * torch.pi * 440 * t)[None].repeat(2, 1)
    lengths = torch.tensor([sr, sr])
    torch.manual_seed(0)
    out, new_len = A.speed_perturb(wave, lengths, (1.25, 1.25))
    assert out.shape == wave.shape
    assert new_len.tolist() == [6400, 6400]  # 1 s played 1.25x faster lasts 0.8 s
    assert torch.all(out[:, 6400:] == 0)
    spec = torch.fft.rfft(out[0, :6400]).abs()
    peak_hz = float(spec.argmax()) * sr / 6400
    assert abs(peak_hz - 550) < 5  # 440 Hz * 1.25


def test_mixup_weights_and_lengths():
    x = torch.stack([torch.ones(10), torch.zeros(10)])
    lengths = torch.tensor([10, 4])
    mixed, ml = A.mixup(x, lengths, torch.tensor([0.7, 0.7]), torch.tensor([1, 0]))
    assert torch.allclose(mixed[0], torch.full((10,), 0.7))
    assert torch.allclose(mixed[1], torch.full((10,), 0.3))
    assert ml.tolist() == [10, 10]


@pytest.mark.parametrize("name", ["time_shift", "add_noise", "speed_perturb"])
def test_same_seed_same_augmentation(name):
    wave, lengths = _batch()
    fn = {
        "time_shift": lambda: A.time_shift(wave, lengths, 0.5),
        "add_noise": lambda: A.add_noise(wave, lengths, (0.0, 30.0), 0.5),
        "speed_perturb": lambda: A.speed_perturb(wave, lengths, (0.9, 1.1))[0],
    }[name]
    torch.manual_seed(3)
    a = fn()
    torch.manual_seed(3)
    b = fn()
    torch.manual_seed(4)
    c = fn()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_augmentation_is_training_only(tiny_audio_model):
    """The same model gives identical logits twice in eval mode (no augmentation runs), and
    different ones in training mode."""
    model, wave, lengths = tiny_audio_model
    model.eval()
    with torch.no_grad():
        a = model(wave, lengths)
        b = model(wave, lengths)
    assert torch.equal(a, b)
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        c = model(wave, lengths)
    assert not torch.allclose(a, c)


@pytest.fixture
def tiny_audio_model():
    from attn.pipelines.recipe.build import build_model
    from attn.pipelines.recipe.load import recipe_from_dict

    recipe = recipe_from_dict(
        {
            "data": {"synthetic": {"per_class": 2}},
            "features": {"sample_rate": 8000, "n_fft": 256, "hop_length": 80, "n_mels": 16},
            "model": {"name": "cnn", "channels": [4], "dropout": 0.0},
            "train": {"augment": {"time_shift": 0.3, "noise_prob": 1.0, "gain_db": 6, "speed": [0.9, 1.1]}},
        }
    )
    torch.manual_seed(0)
    model = build_model(recipe, 3)
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 8000)).astype(np.float32))
    return model, wave, torch.tensor([8000, 6000])


def test_background_folder_is_cut_into_segments_and_used_in_training(tmp_path, tiny_recipe):
    import attn
    from attn.pipelines.data.clips import load_background
    from helpers import tone, write_wav

    bg = tmp_path / "bg"
    write_wav(bg / "hum.wav", tone(50, 2.2, 8000), 8000)  # 2.2 s -> 4 segments of 0.5 s
    write_wav(bg / "sub" / "click.flac", tone(3000, 0.1, 16000), 16000)  # shorter: repeated to fill one
    (bg / "notes.txt").write_text("not audio")
    bank = load_background(str(bg), (".wav", ".flac"), 8000, 4000)
    assert bank.shape == (5, 4000) and bank.dtype == np.float32
    assert np.abs(bank[-1]).max() > 0.1  # the click, resampled and tiled, not silence
    res = attn.train(tiny_recipe(epochs=1), [f"train.augment.background={bg}", "train.augment.background_prob=1.0"],
                     out=str(tmp_path / "run"), device="cpu")  # fmt: skip
    assert res.data["background_segments"] == 5
    (tmp_path / "empty").mkdir()
    with pytest.raises(attn.ConfigError, match="no readable audio"):
        load_background(str(tmp_path / "empty"), (".wav",), 8000, 4000)


def test_time_shift_moves_at_most_the_given_share():
    n = 1000
    wave = torch.zeros(64, n)
    wave[:, 500] = 1.0  # one click in the middle of each 1000-sample row
    lengths = torch.full((64,), n)
    torch.manual_seed(0)
    moved = A.time_shift(wave, lengths, 0.1).argmax(1) - 500
    assert moved.abs().max() <= 100 and moved.abs().max() >= 50  # up to 10% of the row, either way
    assert (moved < 0).any() and (moved > 0).any()
