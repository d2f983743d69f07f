"""Corpus readers on generated corpora (checked against the generator's manifest) and hand-made edge cases."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rhemo.data.readers import (DATASETS, ReaderError, Skipped, Utterance, parse_emo_evaluation, read_corpus)

SR = 16000


def wav(path: Path, seconds: float = 0.2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), SR)
    return path


def by_reason(skipped):
    return {Path(s.path).name: s.reason.split(":")[0] for s in skipped}


# --- generated corpora vs the generator's own records --------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic_roots(tmp_path_factory):
    synthetic = pytest.importorskip("rhemo.data.synthetic")
    base = tmp_path_factory.mktemp("synthetic")
    sizes = {"iemocap": 24, "ravdess": 10, "emodb": 10, "tess": 14, "folder": 8}
    roots = {}
    for layout, n in sizes.items():
        kw = {"sessions": 2} if layout == "iemocap" else {}
        roots[layout] = synthetic.make_corpus(base / layout, layout, n_utterances=n, seed=3, min_seconds=0.5,
                                              max_seconds=1.0, **kw)
    return roots


@pytest.mark.parametrize("layout", DATASETS)
def test_reader_agrees_with_generator_manifest(synthetic_roots, layout):
    from rhemo.data.synthetic import read_manifest

    root = synthetic_roots[layout]
    records = {r["path"]: r for r in read_manifest(root)["utterances"]}
    utts, skipped = read_corpus(layout, root)
    assert skipped == []
    assert len(utts) == len(records)
    assert [u.path for u in utts] == sorted(u.path for u in utts)
    for u in utts:
        rec = records[Path(u.path).relative_to(root).as_posix()]
        assert u.label == rec["label"]
        assert u.session == rec["session"]
        if layout != "folder":  # the folder layout carries no speaker information
            assert u.speaker == rec["speaker"]
        if layout == "iemocap":
            np.testing.assert_allclose([u.valence, u.arousal, u.dominance], rec["vad"], atol=1e-4)
        else:
            assert (u.valence, u.arousal, u.dominance) == (None, None, None)


def test_reading_is_deterministic(synthetic_roots):
    assert read_corpus("iemocap", synthetic_roots["iemocap"]) == read_corpus("iemocap", synthetic_roots["iemocap"])


# --- IEMOCAP edge cases --------------------------------------------------------------------------------------
def make_iemocap(root: Path) -> Path:
    s1 = root / "Session1"
    s3 = root / "Session3"
    s5 = root / "Session5"
    wav(s1 / "sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav")
    wav(s1 / "sentences/wav/Ses01F_impro01/Ses01F_impro01_M013.wav")
    wav(s1 / "sentences/wav/Ses01F_impro01/Ses01F_impro01_F00.wav")       # id is a prefix of F000/F001
    wav(s1 / "sentences/wav/Ses01F_impro01/Ses01F_impro01_F002.wav")      # unknown label
    wav(s1 / "sentences/wav/Ses01F_impro01/Ses01F_impro01_F003.wav")      # bad V/A/D
    (s1 / "sentences/wav/Ses01F_impro01/._Ses01F_impro01_F000.wav").write_bytes(b"\0\5\26\7junk")
    (s1 / "sentences/wav/Ses01F_impro01/Ses01F_impro01.pk").write_bytes(b"not audio")
    wav(s1 / "sentences/wav/Ses01M_script02_2/Ses01M_script02_2_F010.wav")  # no EmoEvaluation file
    wav(s3 / "sentences/wav/Ses03M_impro05a/Ses03M_impro05a_M012.wav")
    wav(s5 / "sentences/wav/Ses05M_script01_1b/Ses05M_script01_1b_F003.wav")
    ev1 = s1 / "dialog/EmoEvaluation"
    ev1.mkdir(parents=True)
    (ev1 / "Ses01F_impro01.txt").write_text(
        "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
        "C-E2:\tNeutral;\t()\n"
        "A-E3:\tval 3; act 2; dom  2;\t()\n\n"
        "[10.0100 - 11.3925]\tSes01F_impro01_F001\tfru\t[2.5000, 3.5000, 3.5000]\n"
        "[14.8872 - 18.0175]\tSes01F_impro01_M013\texc\t[3.5000, 3.0000, 3.0000]\n"
        "[20.0 - 21.0]\tSes01F_impro01_F002\tzzz\t[3.0, 3.0, 3.0]\n"
        "[22.0 - 23.0]\tSes01F_impro01_F003\tneu\t[3.0, __import__('os'), 3.0]\n")
    (ev1 / "._Ses01F_impro01.txt").write_bytes(b"\0\5\26\7[junk")
    (ev1 / "Categorical").mkdir()
    (ev1 / "Categorical" / "Ses01F_impro01_e1_cat.txt").write_text("Ses01F_impro01_F000 :Neutral state; ()\n")
    ev3 = s3 / "dialog/EmoEvaluation"
    ev3.mkdir(parents=True)
    (ev3 / "Ses03M_impro05a.txt").write_text("[1.0 - 2.0]\tSes03M_impro05a_M012\tang\t[1.5, 4.0, 4.5]\n")
    ev5 = s5 / "dialog/EmoEvaluation"
    ev5.mkdir(parents=True)
    (ev5 / "Ses05M_script01_1b.txt").write_text("[1.0 - 2.0]\tSes05M_script01_1b_F003\tsad\t[1.0, 2.0, 2.0]\r\n")
    (root / "Documentation").mkdir()
    return root


def test_iemocap_edge_cases(tmp_path):
    utts, skipped = read_corpus("iemocap", make_iemocap(tmp_path))
    assert [u.utterance_id for u in utts] == ["Ses01F_impro01_F000", "Ses01F_impro01_M013",
                                              "Ses03M_impro05a_M012", "Ses05M_script01_1b_F003"]
    f000, m013, m012, f003 = utts
    assert f000 == Utterance("Ses01F_impro01_F000", f000.path, "Ses01F", 1, "neu", 2.5, 2.5, 2.5)
    assert m013.speaker == "Ses01M" and m013.label == "exc" and (m013.valence, m013.arousal) == (3.5, 3.0)
    assert (m012.speaker, m012.session, m012.label, m012.dominance) == ("Ses03M", 3, "ang", 4.5)
    assert (f003.speaker, f003.session, f003.label) == ("Ses05F", 5, "sad")
    assert by_reason(skipped) == {"Ses01F_impro01_F00.wav": "no label", "Ses01F_impro01_F002.wav": "unknown label",
                                  "Ses01F_impro01_F003.wav": "bad label line",
                                  "Ses01M_script02_2_F010.wav": "no label"}
    assert all(Path(s.path).is_absolute() for s in skipped)


def test_emo_evaluation_parser_exact_fields(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("[1 - 2]\tA_1\tneu\t[1.5, 2, 3e0]\n[3 - 4]\tA_1\tang\t[5, 5, 5]\nnoise line\n[x]\n")
    assert parse_emo_evaluation(path) == {"A_1": ("neu", 1.5, 2.0, 3.0)}


def test_iemocap_wrong_roots(tmp_path):
    with pytest.raises(ReaderError, match="does not exist"):
        read_corpus("iemocap", tmp_path / "nope")
    (tmp_path / "Actor_01").mkdir()
    with pytest.raises(ReaderError, match="SessionN.*found: Actor_01"):
        read_corpus("iemocap", tmp_path)
    (tmp_path / "Session1" / "sentences" / "wav" / "Ses01F_impro01").mkdir(parents=True)
    with pytest.raises(ReaderError, match="no .wav files"):
        read_corpus("iemocap", tmp_path)


# --- RAVDESS, EmoDB, TESS, folder -----------------------------------------------------------------------------
def test_ravdess_names_and_nesting(tmp_path):
    base = tmp_path / "Audio_Speech_Actors_01-24"
    wav(base / "Actor_01/03-01-05-01-02-01-01.wav")
    wav(base / "Actor_12/03-01-08-02-01-02-12.wav")
    wav(base / "Actor_12/03-01-09-02-01-02-12.wav")   # emotion code out of range
    wav(base / "Actor_12/readme-01.wav")              # bad name
    (base / "Actor_12/._03-01-05-01-02-01-12.wav").write_bytes(b"junk")
    utts, skipped = read_corpus("ravdess", tmp_path)
    assert [(u.utterance_id, u.speaker, u.label) for u in utts] == [
        ("03-01-05-01-02-01-01", "Actor_01", "angry"), ("03-01-08-02-01-02-12", "Actor_12", "surprised")]
    assert by_reason(skipped) == {"03-01-09-02-01-02-12.wav": "unknown label", "readme-01.wav": "bad name"}
    no_actors = wav(tmp_path / "elsewhere" / "x.wav").parent
    with pytest.raises(ReaderError, match="Actor_NN"):
        read_corpus("ravdess", no_actors)


def test_emodb_root_or_wav_folder(tmp_path):
    wav(tmp_path / "wav/03a01Fa.wav")
    wav(tmp_path / "wav/16b10Wb.wav")
    wav(tmp_path / "wav/11a02Xa.wav")
    (tmp_path / "wav/notes.txt").write_text("x")
    utts, skipped = read_corpus("emodb", tmp_path)
    assert [(u.utterance_id, u.speaker, u.label) for u in utts] == [("03a01Fa", "03", "happiness"),
                                                                     ("16b10Wb", "16", "anger")]
    assert by_reason(skipped) == {"11a02Xa.wav": "unknown label"}
    assert read_corpus("emodb", tmp_path / "wav")[0] == utts
    (tmp_path / "nothing_here").mkdir()
    with pytest.raises(ReaderError, match="no .wav files"):
        read_corpus("emodb", tmp_path / "nothing_here")


def test_tess_capitalisation_and_pleasant_surprise(tmp_path):
    wav(tmp_path / "TESS Toronto emotional speech set data/OAF_Pleasant_surprise/OAF_back_ps.wav")
    wav(tmp_path / "TESS Toronto emotional speech set data/YAF_pleasant_surprised/YAF_bar_pleasant_surprised.wav")
    wav(tmp_path / "TESS Toronto emotional speech set data/OAF_Fear/OAF_base_fear.wav")
    wav(tmp_path / "TESS Toronto emotional speech set data/yaf_sad/YAF_bath_Sad.wav")
    wav(tmp_path / "TESS Toronto emotional speech set data/YAF_sad/YAF_bean_calm.wav")
    utts, skipped = read_corpus("tess", tmp_path)
    assert sorted((u.utterance_id, u.speaker, u.label) for u in utts) == [
        ("OAF_back_ps", "OAF", "pleasant_surprise"), ("OAF_base_fear", "OAF", "fear"),
        ("YAF_bar_pleasant_surprised", "YAF", "pleasant_surprise"), ("YAF_bath_Sad", "YAF", "sad")]
    assert by_reason(skipped) == {"YAF_bean_calm.wav": "unknown label"}
    no_speakers = wav(tmp_path / "other" / "a.wav").parent
    with pytest.raises(ReaderError, match="OAF_"):
        read_corpus("tess", no_speakers)


def test_folder_layout_and_manifest(tmp_path):
    wav(tmp_path / "corpus/happy/a.wav")
    wav(tmp_path / "corpus/happy/spk2/b.wav")
    wav(tmp_path / "corpus/sad/c.wav")
    (tmp_path / "corpus/sad/c.txt").write_text("not audio")
    utts, skipped = read_corpus("folder", tmp_path / "corpus")
    assert [(u.utterance_id, u.label, u.speaker) for u in utts] == [
        ("happy/a", "happy", ""), ("happy/spk2/b", "happy", ""), ("sad/c", "sad", "")]
    manifest = tmp_path / "corpus" / "list.csv"
    manifest.write_text("path,label,speaker\nhappy/a.wav,joy,s1\nsad/c.wav,,s2\nmissing.wav,joy,s3\n"
                        f"{tmp_path / 'corpus/happy/spk2/b.wav'},calm,s9\n")
    utts, skipped = read_corpus("folder", manifest)
    assert [(u.utterance_id, u.label, u.speaker) for u in utts] == [
        ("happy/a", "joy", "s1"), (str(tmp_path / "corpus/happy/spk2/b"), "calm", "s9")]
    assert by_reason(skipped) == {"c.wav": "no label", "missing.wav": "missing file"}
    manifest.write_text("happy/a.wav\n")
    with pytest.raises(ReaderError, match="line 1 has 1 columns"):
        read_corpus("folder", manifest)
    (tmp_path / "void" / "label").mkdir(parents=True)
    with pytest.raises(ReaderError, match="no audio files"):
        read_corpus("folder", tmp_path / "void")


def test_duplicate_ids_are_skipped(tmp_path):
    wav(tmp_path / "copy1/Actor_01/03-01-05-01-02-01-01.wav")
    wav(tmp_path / "copy2/Actor_01/03-01-05-01-02-01-01.wav")
    utts, skipped = read_corpus("ravdess", tmp_path)
    assert len(utts) == 1 and "copy1" in utts[0].path
    assert len(skipped) == 1 and skipped[0].reason.startswith("duplicate") and "copy2" in skipped[0].path


def test_unknown_dataset():
    with pytest.raises(ReaderError, match="unknown dataset 'savee'"):
        read_corpus("savee", ".")
    assert isinstance(Skipped("a", "b"), Skipped)
