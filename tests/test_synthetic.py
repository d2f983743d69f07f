"""Tests of the synthetic corpus generator (rhemo.data.synthetic).

The layouts are checked against the real corpora's naming rules written out here as regular expressions, the
IEMOCAP label files against the published line format, and the emotional content with acoustic features
computed here in plain numpy (loudness, autocorrelation F0), independent of the generator's own code.
"""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rhemo.data import synthetic
from rhemo.data.synthetic import SyntheticCorpusError, make_corpus, read_manifest

FOUR = ("neu", "ang", "hap", "sad")
IEMOCAP_N = 120
IEMOCAP_SEED = 3

DIALOG = r"Ses0(?P<s>[1-5])[FM]_(?:impro0[1-8][ab]?|script0[1-3]_[1-3][ab]?)"
LABEL_LINE = re.compile(r"^\[(\d+\.\d{4}) - (\d+\.\d{4})\]\t(Ses0[1-5][FM]_\S+_[FM]\d{3})\t"
                        r"(neu|ang|hap|sad|exc|fru|sur|fea|dis|oth|xxx)\t"
                        r"\[(\d\.\d{4}), (\d\.\d{4}), (\d\.\d{4})\]$")
ATTRIBUTE_LINE = re.compile(r"^A-E\d:\tval (\d); act (\d); dom  (\d);\t\(.*\)$")


def relative_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def read_labels(root: Path) -> dict[str, dict]:
    """Label lines of every EmoEvaluation/<dialog>.txt, parsed with the strict IEMOCAP line format."""
    out = {}
    for txt in sorted(root.glob("Session*/dialog/EmoEvaluation/*.txt")):
        for line in txt.read_text().splitlines():
            m = LABEL_LINE.match(line)
            if m:
                assert m.group(3) not in out, f"duplicate label line for {m.group(3)}"
                out[m.group(3)] = {"start": float(m.group(1)), "end": float(m.group(2)), "label": m.group(4),
                                   "vad": np.array([float(m.group(k)) for k in (5, 6, 7)]), "file": txt}
    return out


def frame_features(x: np.ndarray, sr: int) -> tuple[float, float]:
    """(active loudness in dB, median F0 in Hz from frame autocorrelation) of a mono signal."""
    length, hop = int(0.04 * sr), int(0.02 * sr)
    frames = np.lib.stride_tricks.sliding_window_view(x, length)[::hop]
    energy = np.sqrt(np.mean(frames ** 2, axis=1))
    active = frames[energy > 0.1 * energy.max()]
    loudness = 20 * np.log10(np.sqrt(np.mean(active ** 2)))
    centred = active - active.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(centred, n=2 * length, axis=1)
    ac = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :length]
    ac /= np.maximum(ac[:, :1], 1e-12)
    low, high = int(sr / 500), int(sr / 60)
    lag = low + np.argmax(ac[:, low:high], axis=1)
    periodic = ac[np.arange(len(lag)), lag] > 0.5
    return float(loudness), float(np.median(sr / lag[periodic]))


@pytest.fixture(scope="module")
def iemocap(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("syn") / "iemocap", "iemocap", n_utterances=IEMOCAP_N,
                       seed=IEMOCAP_SEED)


@pytest.fixture(scope="module")
def iemocap_features(iemocap):
    """Per four-class utterance: label, gender, speaker, loudness dB, log2 F0."""
    labels = read_labels(iemocap)
    rows = []
    for wav in sorted(iemocap.glob("Session*/sentences/wav/*/*.wav")):
        if wav.name.startswith("._"):
            continue
        x, sr = sf.read(wav)
        loud, f0 = frame_features(x, sr)
        gender = wav.stem.rsplit("_", 1)[1][0]
        rows.append((labels[wav.stem]["label"], gender, wav.stem[:5] + gender, loud, math.log2(f0)))
    return rows


# ------------------------------------------------------------------------------------------------ IEMOCAP

def test_iemocap_tree_has_exact_real_layout(iemocap):
    files = relative_files(iemocap)
    patterns = [
        rf"Session(?P<n>[1-5])/sentences/wav/(?P<d>{DIALOG})/(?P=d)_[FM]\d{{3}}\.wav",
        rf"Session(?P<n>[1-5])/sentences/wav/(?P<d>{DIALOG})/\._(?P=d)_[FM]\d{{3}}\.wav",
        rf"Session(?P<n>[1-5])/sentences/wav/(?P<d>{DIALOG})/(?P=d)\.pk",
        rf"Session(?P<n>[1-5])/dialog/EmoEvaluation/(?P<d>{DIALOG})\.txt",
        rf"Session(?P<n>[1-5])/dialog/EmoEvaluation/(?:Categorical|Attribute)/(?P<d>{DIALOG})_e\d_(?:cat|atr)\.txt",
        rf"Session(?P<n>[1-5])/dialog/transcriptions/(?P<d>{DIALOG})\.txt",
    ]
    wavs = []
    for rel in files:
        if rel == "synthetic_corpus.json":
            continue
        match = next((m for m in (re.fullmatch(p, rel) for p in patterns) if m), None)
        assert match is not None, f"unexpected file {rel}"
        assert match.group("n") == match.group("s"), f"{rel}: dialog of another session"
        if rel.endswith(".wav") and "/._" not in rel:
            wavs.append(rel)
    assert len(wavs) == IEMOCAP_N
    assert sorted(p.name for p in iemocap.iterdir()) == [f"Session{k}" for k in range(1, 6)] + [
        "synthetic_corpus.json"]
    # The odd real-world dialog names and the clutter a reader must ignore.
    dialogs = {rel.split("/")[3] for rel in wavs}
    assert {"Ses01M_script01_1b", "Ses03M_impro05a", "Ses05M_script01_1b", "Ses02F_impro01"} <= dialogs
    assert "Session1/sentences/wav/Ses01F_impro01/._Ses01F_impro01_" in "".join(files) and \
        sum("/._" in f for f in files) == 5
    assert sum(f.endswith(".pk") for f in files) == 5
    assert any("/EmoEvaluation/Categorical/" in f for f in files)
    apple = next(iemocap.glob("Session1/sentences/wav/*/._*.wav"))
    with pytest.raises(RuntimeError):
        sf.info(apple)
    for rel in wavs[::17]:
        info = sf.info(iemocap / rel)
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")


def test_emo_evaluation_files_follow_the_iemocap_line_format(iemocap):
    wav_stems = {p.stem: p for p in iemocap.glob("Session*/sentences/wav/*/*.wav") if not p.name.startswith("._")}
    labels = read_labels(iemocap)
    assert set(labels) == set(wav_stems), "every wav has exactly one label line and vice versa"
    for txt in sorted(iemocap.glob("Session*/dialog/EmoEvaluation/*.txt")):
        lines = txt.read_text().split("\n")
        assert lines[0] == "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]" and lines[1] == ""
        blocks = "\n".join(lines[2:]).strip("\n").split("\n\n")
        previous_end = 0.0
        for block in blocks:
            head, *rest = block.split("\n")
            m = LABEL_LINE.match(head)
            assert m, f"{txt.name}: bad label line {head!r}"
            utt = m.group(3)
            assert utt.rsplit("_", 1)[0] == txt.stem, f"{utt} listed in {txt.name}"
            assert all(line.startswith(("C-", "A-")) for line in rest), rest
            categorical = [line for line in rest if line.startswith("C-")]
            ratings = np.array([ATTRIBUTE_LINE.match(line).groups() for line in rest if line.startswith("A-")],
                               dtype=float)
            assert len(categorical) >= 3 and len(ratings) in (2, 3)
            start, end = float(m.group(1)), float(m.group(2))
            assert start > previous_end
            previous_end = end
            seconds = sf.info(wav_stems[utt]).frames / 16000
            assert abs((end - start) - seconds) < 2e-4, f"{utt}: times {start}-{end} vs {seconds} s of audio"
            vad = np.array([float(m.group(k)) for k in (5, 6, 7)])
            # The turn's V/A/D is the mean of the evaluators' integer ratings (so multiples of 1/2 or 1/3).
            np.testing.assert_allclose(vad, ratings.mean(axis=0), atol=5e-5)
            assert np.all((vad >= 1) & (vad <= 5))


def test_iemocap_label_counts_are_the_documented_quotas(iemocap):
    counts = {}
    for entry in read_labels(iemocap).values():
        counts[entry["label"]] = counts.get(entry["label"], 0) + 1
    # 120 x (.24 .17 .14 .17 .09 .09 .03 .07), largest remainder, worked out by hand.
    assert counts == {"neu": 29, "ang": 20, "hap": 17, "sad": 20, "exc": 11, "fru": 11, "sur": 4, "xxx": 8}
    manifest = read_manifest(iemocap)
    assert manifest["label_counts"] == dict(sorted(counts.items()))


def test_iemocap_vad_follows_the_class(iemocap):
    by_label = {}
    for entry in read_labels(iemocap).values():
        by_label.setdefault(entry["label"], []).append(entry["vad"])
    mean = {k: np.mean(v, axis=0) for k, v in by_label.items()}
    valence, arousal, dominance = 0, 1, 2
    assert mean["hap"][valence] > mean["neu"][valence] > mean["ang"][valence]
    assert mean["neu"][valence] > mean["sad"][valence]
    assert mean["ang"][arousal] > mean["neu"][arousal] > mean["sad"][arousal]
    assert mean["ang"][dominance] > mean["sad"][dominance]
    # Not a lookup table: the values vary inside a class.
    assert np.std(np.array(by_label["neu"])[:, arousal]) > 0.2


def test_iemocap_durations_exercise_padding_and_tail_segment(iemocap):
    frames = np.array([sf.info(p).frames for p in iemocap.glob("Session*/sentences/wav/*/Ses*.wav")])
    assert frames.min() >= 1.5 * 16000 - 1 and frames.max() <= 11.0 * 16000 + 1
    assert np.sum(frames < 4 * 16000) >= 10, "short files that get zero-padded to one 4 s segment"
    # scipy.signal.stft (nperseg 256, hop 128, boundary padding) gives > 1002 frames beyond 1002*128 samples;
    # only then does the reference segmentation add its extra tail segment.
    assert np.sum(frames > 1002 * 128) >= 2


def test_classes_are_separable_but_overlapping(iemocap_features):
    labels = np.array([r[0] for r in iemocap_features])
    gender = np.array([r[1] for r in iemocap_features])
    loud = np.array([r[3] for r in iemocap_features])
    log_f0 = np.array([r[4] for r in iemocap_features])
    keep = np.isin(labels, FOUR)
    labels, gender, loud, log_f0 = labels[keep], gender[keep], loud[keep], log_f0[keep]
    assert len(labels) == 86
    for g in "FM":  # F0 relative to the gender's mean
        log_f0[gender == g] -= log_f0[gender == g].mean()

    def mean(x, c):
        return x[labels == c].mean()

    assert mean(loud, "ang") > mean(loud, "neu") + 2 > mean(loud, "sad") + 4
    assert mean(loud, "hap") > mean(loud, "sad")
    assert mean(log_f0, "hap") > mean(log_f0, "neu") > mean(log_f0, "sad")
    assert mean(log_f0, "ang") > mean(log_f0, "neu")
    # Large within-class spread: neighbouring classes overlap in loudness.
    for a, b in (("neu", "ang"), ("neu", "sad"), ("hap", "ang")):
        assert loud[labels == a].max() > loud[labels == b].min() and loud[labels == b].max() > loud[
            labels == a].min()
    assert min(np.std(loud[labels == c]) for c in FOUR) > 1.5

    features = np.stack([loud, log_f0], axis=1)
    features = (features - features.mean(axis=0)) / features.std(axis=0)
    correct = 0
    for i in range(len(labels)):  # leave-one-out nearest centroid
        others = np.arange(len(labels)) != i
        centroids = np.array([features[others & (labels == c)].mean(axis=0) for c in FOUR])
        correct += FOUR[int(np.argmin(((centroids - features[i]) ** 2).sum(axis=1)))] == labels[i]
    accuracy = correct / len(labels)
    assert 0.45 < accuracy < 0.9, accuracy  # chance is about 0.3


def test_speakers_differ_by_session(iemocap, iemocap_features):
    manifest = read_manifest(iemocap)
    speakers = manifest["speakers"]
    assert sorted(speakers) == [f"Ses0{s}{g}" for s in range(1, 6) for g in "FM"]
    base = {k: v["f0_hz"] for k, v in speakers.items()}
    assert len(set(base.values())) == 10
    assert len({v["formant_scale"] for v in speakers.values()}) == 10
    for rec in manifest["utterances"]:
        stem = Path(rec["path"]).stem
        assert rec["speaker"] == stem[:5] + stem.rsplit("_", 1)[1][0] and rec["session"] == int(stem[3:5])
    # In the audio: each speaker's median F0 follows their base F0 (females above males in every session).
    measured = {}
    for _, _, speaker, _, log_f0 in iemocap_features:
        measured.setdefault(speaker, []).append(log_f0)
    names = sorted(measured)
    observed = np.array([np.median(measured[k]) for k in names])
    expected = np.log2([base[k] for k in names])
    assert np.corrcoef(observed, expected)[0, 1] > 0.9
    for s in range(1, 6):
        assert np.median(measured[f"Ses0{s}F"]) > np.median(measured[f"Ses0{s}M"]) + 0.5


# ------------------------------------------------------------------------------------------------ determinism

def test_same_seed_same_bytes_other_seed_other_audio(tmp_path):
    kwargs = dict(n_utterances=6, sessions=2, max_seconds=3.0)
    a = make_corpus(tmp_path / "a", "iemocap", seed=11, **kwargs)
    b = make_corpus(tmp_path / "b", "iemocap", seed=11, **kwargs)
    c = make_corpus(tmp_path / "c", "iemocap", seed=12, **kwargs)
    files = relative_files(a)
    assert files == relative_files(b)
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    wavs = [rel for rel in files if rel.endswith(".wav") and "/._" not in rel]
    assert len(wavs) == 6
    common = [rel for rel in wavs if (c / rel).exists()]
    assert len(common) >= 3
    assert all((a / rel).read_bytes() != (c / rel).read_bytes() for rel in common)
    # Determinism also at a non-16 kHz rate.
    t1 = make_corpus(tmp_path / "t1", "tess", n_utterances=3, seed=4)
    t2 = make_corpus(tmp_path / "t2", "tess", n_utterances=3, seed=4)
    assert all((t1 / r).read_bytes() == (t2 / r).read_bytes() for r in relative_files(t1))


# ------------------------------------------------------------------------------------------------ other layouts

def test_ravdess_layout(tmp_path):
    root = make_corpus(tmp_path / "ravdess", "ravdess", n_utterances=24, seed=2)
    wavs = [r for r in relative_files(root) if r != "synthetic_corpus.json"]
    assert len(wavs) == 24
    emotions, channels = set(), set()
    for rel in wavs:
        m = re.fullmatch(r"Actor_(\d\d)/03-01-(0[1-8])-(0[12])-(0[12])-(0[12])-(\d\d)\.wav", rel)
        assert m, rel
        assert m.group(1) == m.group(6) and 1 <= int(m.group(1)) <= 24
        assert not (m.group(2) == "01" and m.group(3) == "02"), f"{rel}: neutral has no strong intensity"
        emotions.add(m.group(2))
        info = sf.info(root / rel)
        assert info.samplerate == 48000 and info.subtype == "PCM_16"
        channels.add(info.channels)
    assert emotions == {f"0{k}" for k in range(1, 9)}
    assert channels == {1, 2}, "one stereo file, as in the real release"
    for name, speaker in read_manifest(root)["speakers"].items():
        assert speaker["gender"] == ("M" if int(name[-2:]) % 2 else "F")


def test_emodb_layout(tmp_path):
    root = make_corpus(tmp_path / "emodb", "emodb", n_utterances=21, seed=2)
    wavs = [r for r in relative_files(root) if r != "synthetic_corpus.json"]
    assert len(wavs) == 21
    letters = set()
    for rel in wavs:
        m = re.fullmatch(r"wav/(03|08|09|1[0-6])([ab]0\d|b10)([WLEAFTN])([a-z])\.wav", rel)
        assert m, rel
        letters.add(m.group(3))
        assert sf.info(root / rel).samplerate == 16000
    assert letters == set("WLEAFTN")


def test_tess_layout(tmp_path):
    root = make_corpus(tmp_path / "tess", "tess", n_utterances=28, seed=2)
    wavs = [r for r in relative_files(root) if r != "synthetic_corpus.json"]
    assert len(wavs) == 28
    folders = {rel.split("/")[0] for rel in wavs}
    assert folders == {"OAF_angry", "OAF_disgust", "OAF_Fear", "OAF_happy", "OAF_neutral",
                       "OAF_Pleasant_surprise", "OAF_Sad", "YAF_angry", "YAF_disgust", "YAF_fear", "YAF_happy",
                       "YAF_neutral", "YAF_pleasant_surprised", "YAF_sad"}
    for rel in wavs:
        m = re.fullmatch(r"(OAF|YAF)_([A-Za-z_]+)/(OAF|YAF)_([a-z]+)_(angry|disgust|fear|happy|neutral|ps|sad)\.wav",
                         rel)
        assert m and m.group(1) == m.group(3), rel
        folder_emotion = m.group(2).lower()
        expected_suffix = "ps" if "surprise" in folder_emotion else folder_emotion
        assert m.group(5) == expected_suffix, rel
        assert sf.info(root / rel).samplerate == 24414
    assert any(r.endswith("_ps.wav") for r in wavs)


def test_folder_layout_and_sample_rate_override(tmp_path):
    root = make_corpus(tmp_path / "folder", "folder", n_utterances=8, seed=2, sample_rate=22050,
                       min_seconds=1.0, max_seconds=1.5)
    wavs = [r for r in relative_files(root) if r != "synthetic_corpus.json"]
    assert len(wavs) == 8
    for rel in wavs:
        assert re.fullmatch(r"(neutral|angry|happy|sad)/spk0[0-5]_\d{5}\.wav", rel), rel
        info = sf.info(root / rel)
        assert info.samplerate == 22050 and 1.0 * 22050 - 1 <= info.frames <= 1.5 * 22050 + 1
    assert {r.split("/")[0] for r in wavs} == {"neutral", "angry", "happy", "sad"}


# ------------------------------------------------------------------------------------------------ CLI, errors

def test_cli_writes_manifest_and_guards_the_output_folder(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert synthetic.main(["--layout", "emodb", "--output", str(out), "--utterances", "3", "--seed", "7",
                           "--quiet"]) == 0
    manifest = json.loads((out / "synthetic_corpus.json").read_text())
    assert manifest["version"] == synthetic.GENERATOR_VERSION and manifest["complete"] is True
    assert manifest["args"] == {"layout": "emodb", "n_utterances": 3, "seed": 7, "sample_rate": 16000,
                                "min_seconds": 1.5, "max_seconds": 5.0, "sessions": None}
    assert len(list(out.glob("wav/*.wav"))) == 3
    # A previous synthetic corpus is replaced, leaving no stale files.
    assert synthetic.main(["--layout", "folder", "--output", str(out), "--utterances", "2", "--quiet",
                           "--max-seconds", "2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["angry", "neutral", "synthetic_corpus.json"])
    # A foreign non-empty folder is refused, unless --force (which deletes nothing).
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit) as exit_info:
        synthetic.main(["--layout", "folder", "--output", str(foreign), "--utterances", "2", "--quiet"])
    assert exit_info.value.code == 2 and "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert synthetic.main(["--layout", "folder", "--output", str(foreign), "--utterances", "2", "--quiet",
                           "--max-seconds", "2", "--force"]) == 0
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(SystemExit) as exit_info:
        synthetic.main(["--help"])
    assert exit_info.value.code == 0 and "--utterances" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(layout="timit"), "unknown layout 'timit'"),
    (dict(seed=-1), "seed must be a non-negative integer, got -1"),
    (dict(n_utterances=0), "n_utterances must be a positive integer, got 0"),
    (dict(sessions=6), "sessions must be an integer in 1..5, got 6"),
    (dict(layout="tess", n_utterances=5000), "at most 2800"),  # 2 speakers x 200 words x 7
    (dict(sample_rate=100), "sample_rate must be an integer in 8000..192000 Hz, got 100"),
    (dict(min_seconds=5.0, max_seconds=2.0), "min_seconds <= max_seconds"),
])
def test_bad_arguments_raise_clear_errors(tmp_path, kwargs, fragment):
    with pytest.raises(SyntheticCorpusError, match=re.escape(fragment)):
        make_corpus(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_standalone_utterance_is_speech_like():
    x = synthetic.synthesize_utterance("angry", seconds=2.0, sample_rate=16000, gender="M", seed=1)
    assert x.dtype == np.float32 and x.shape == (32000,)
    assert 0.05 < np.abs(x).max() <= 1.0
    _, f0 = frame_features(x.astype(float), 16000)
    assert 70 < f0 < 300  # a male voice, raised by anger
    np.testing.assert_array_equal(x, synthetic.synthesize_utterance("angry", 2.0, 16000, "M", 1))
