"""RH-emo provenance and the SER test-leakage check: the paper's flow passes, a labelled overlap is refused
(unless allowed), a label-free stage-1 overlap is reported and allowed, foreign weights are flagged."""
import json

import numpy as np
import pytest
import torch

from engine_helpers import FOUR, make_rhemo_weights, make_store, read_metrics, rhemo_config, run_script, ser_config
from rhemo.data.store import SegmentStore
from rhemo.train import runfolder
from rhemo.train.config import validate
from rhemo.data.selection import select_rows

LABELS = FOUR * 5 + ["fru", "exc", "sur", "fru"] * 2   # 20 four-class utterances + 8 only in the complete view
SEED = 7   # with this seed one SER test utterance is in stage 1's (complete view) training split


@pytest.fixture(scope="module")
def paper_flow(tmp_path_factory):
    """Stage 1 (complete view, beta 0) then stage 2 (4 classes, labelled) from it, same seed, one epoch each."""
    tmp = tmp_path_factory.mktemp("flow")
    store = make_store(tmp / "store", LABELS)
    stage1, stage2 = tmp / "stage1", tmp / "stage2"
    common = {"num_epochs": 1, "split_fractions": [0.6, 0.2, 0.2], "seed": SEED}
    assert run_script("training_RHemo.py", rhemo_config(store, stage1, label_view="complete", loss_beta=0.0,
                                                        **common), tmp) == 0
    assert run_script("training_RHemo.py", rhemo_config(store, stage2, label_view="iemocap4", loss_beta=0.01,
                                                        load_pretrained=str(stage1 / "checkpoint.pt"), **common),
                      tmp) == 0
    return tmp, store, stage2 / "checkpoint.pt"


def _ser(store, out, weights, **kw):
    return ser_config(store, out, model_quat=True, use_r2he=True, r2he_model_path=str(weights), num_epochs=1,
                      model_hidden_size=8, **{"seed": SEED, "split_fractions": [0.6, 0.2, 0.2], **kw})


def _split(store, **cfg):
    full = validate({"store_path": str(store), **cfg}, script="ser", source="test")
    return select_rows(SegmentStore(store), full)


def test_checkpoint_records_store_split_and_labelled_stages(paper_flow):
    _, store, weights = paper_flow
    record = torch.load(weights, weights_only=True)["provenance"]
    fingerprint = json.loads((store / "info.json").read_text()).get("fingerprint")
    assert record["seed"] == SEED and record["protocol"] == "random" and record["label_view"] == "iemocap4"
    assert [s["label_view"] for s in record["stages"]] == ["complete", "iemocap4"]
    assert [s["labelled"] for s in record["stages"]] == [False, True]
    assert record["store_fingerprint"] == record["stages"][0]["store_fingerprint"]
    assert fingerprint is None or record["store_fingerprint"] == fingerprint


def test_stage2_and_ser_on_the_same_store_view_and_seed_get_the_identical_split(paper_flow):
    _, store, _ = paper_flow
    stage2 = _split(store, label_view="iemocap4", seed=SEED, split_fractions=[0.6, 0.2, 0.2])
    ser = _split(store, label_view="iemocap4", seed=SEED, split_fractions=[0.6, 0.2, 0.2])
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(stage2.rows[name], ser.rows[name])


def test_paper_flow_passes_and_reports_the_label_free_stage1_overlap(paper_flow, capsys):
    tmp, store, weights = paper_flow
    utt = np.asarray(SegmentStore(store).table.utterance_id)
    ser_test = set(utt[_split(store, label_view="iemocap4", seed=SEED, split_fractions=[0.6, 0.2, 0.2]).rows["test"]])
    stage1_train = set(utt[_split(store, label_view="complete", seed=SEED, split_fractions=[0.6, 0.2, 0.2]).rows["train"]])
    expected = len(ser_test & stage1_train)
    assert expected > 0   # the complete view permutes a different utterance list, as the authors' stage 1 did
    out = tmp / "ser_ok"
    assert run_script("training_SER.py", _ser(store, out, weights), tmp) == 0
    printed = capsys.readouterr().out
    assert f"{expected} of {len(ser_test)} test utterances were in the training split of stage 1" in printed
    assert "used no labels" in printed and "stage 2 of RH-emo" not in printed
    check = read_metrics(out)["rhemo_check"]
    assert check == {"status": "label-free overlap", "labelled_overlap": 0, "label_free_overlap": expected}


def test_labelled_overlap_is_refused_in_one_line_unless_allowed(paper_flow, capsys):
    tmp, store, weights = paper_flow
    out = tmp / "ser_leak"
    code = run_script("training_SER.py", _ser(store, out, weights, seed=5), tmp)   # another split
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "stage 2 of RH-emo" in err and "allow_rhemo_test_overlap" in err
    assert not (out / "metrics.json").exists()
    assert run_script("training_SER.py", _ser(store, out, weights, seed=5, allow_rhemo_test_overlap=True), tmp) == 0
    metrics = read_metrics(out)
    assert metrics["rhemo_check"]["status"] == "labelled overlap allowed"
    assert metrics["rhemo_check"]["labelled_overlap"] > 0 and metrics["note"] == "RH-emo: labelled overlap allowed"


def test_weights_not_trained_here_are_reported_in_one_line(tmp_path, capsys):
    store = make_store(tmp_path / "store", FOUR * 3)
    weights = make_rhemo_weights(tmp_path / "authors.pt", store)   # a bare state_dict, as the authors' file
    out = tmp_path / "ser"
    cfg = _ser(store, out, weights, split_fractions=[0.5, 0.25, 0.25], r2he_bn_mode="batch")
    assert run_script("training_SER.py", cfg, tmp_path) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if "was not trained by training_RHemo.py" in l]
    assert len(lines) == 1 and "70 %" in lines[0]
    assert read_metrics(out)["rhemo_check"]["status"] == "unverified"
    assert runfolder.read_metrics(out / "metrics.json")[2] == "RH-emo: unverified"   # the spreadsheet's note column
    assert not (store / "embeddings").exists()    # batch statistics: no embedding cache
