"""The model-head seam: the manifest layout with several models per modality, and the scoring
contract that combines a classifier's and an anomaly model's opinions (inspectors/heads.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_inspector.errors import UserError
from edge_inspector.inspectors.heads import (
    AnomalyHead,
    ClassifierHead,
    InferenceBatch,
    Opinion,
    anomaly_score,
    decide,
    decision_labels,
    lift,
)
from edge_inspector.manifest import (
    Manifest,
    load_manifest,
    replace_entry,
    write_manifest,
)

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("ok", "scratch", "crack", "spot", "dent")


def anomaly_entry(**over: object) -> dict:
    entry = {
        "kind": "anomaly", "name": "visual_anomaly", "file": "visual_anomaly.onnx", "sha256": "0" * 64,
        "method": "test", "mean": [0.5] * 3, "std": [0.25] * 3, "threshold": 2.0, "score_scale": 0.5,
        "map_threshold": 2.0, "max_false_reject": 0.01,
        "learnt_from": {"items": 200, "sha256": "1" * 64, "sources": ["/data/good"], "date": "2026-01-01T00:00:00Z"},
    }
    entry.update(over)
    return entry


def classifier_entry(**over: object) -> dict:
    entry = {"name": "visual_cnn", "file": "visual_cnn.onnx", "sha256": "2" * 64, "mean": [0.5] * 3,
             "std": [0.25] * 3, "labels": list(LABELS), "threshold": 0.8}
    entry.update(over)
    return entry


def test_one_table_per_modality_is_a_classifier_as_before() -> None:
    shipped = load_manifest(ROOT / "engines")
    assert [e.kind for e in shipped.entries("visual")] == ["classifier"]
    assert shipped.classifier("acoustic").name == "acoustic_gru" and shipped.anomaly("visual") is None


def test_two_visual_models_in_one_directory_round_trip(tmp_path: Path) -> None:
    m = Manifest(directory=tmp_path, visual=[anomaly_entry(), classifier_entry()])
    assert [e.kind for e in m.entries("visual")] == ["classifier", "anomaly"]
    write_manifest(m)
    text = (tmp_path / "manifest.toml").read_text()
    assert text.count("[[visual]]") == 2
    again = load_manifest(tmp_path, verify=False)
    assert again.anomaly("visual") == m.anomaly("visual") and again.classifier("visual") == m.classifier("visual")
    assert set(again.summary()) == {"visual", "visual.anomaly"}


def test_replacing_one_model_keeps_the_others(tmp_path: Path) -> None:
    for path in [ROOT / "engines" / "manifest.toml", *(ROOT / "engines").glob("*.onnx")]:
        shutil.copy(path, tmp_path / path.name)
    shipped = load_manifest(tmp_path)
    learnt = replace_entry(shipped, "visual", Manifest(visual=[anomaly_entry()]).anomaly("visual"))
    write_manifest(learnt)
    again = load_manifest(tmp_path, verify=False)
    assert again.classifier("visual") == shipped.classifier("visual")
    assert again.classifier("acoustic") == shipped.classifier("acoustic")
    assert again.anomaly("visual").threshold == 2.0


@pytest.mark.parametrize("visual,message", [
    ([classifier_entry(), classifier_entry(name="other")], "2 models of kind 'classifier'"),
    ([classifier_entry(), anomaly_entry(name="visual_cnn")], "model name 'visual_cnn' is used twice"),
    ([classifier_entry(), anomaly_entry(std=[0.2] * 3)], "need the same input_shape, color, mean, std"),
    ([anomaly_entry(kind="detector")], "visual.0"),
])
def test_inconsistent_manifests_are_refused_naming_the_problem(tmp_path: Path, visual: list, message: str) -> None:
    import tomli_w

    (tmp_path / "manifest.toml").write_text(tomli_w.dumps({"schema_version": 1, "visual": visual}))
    with pytest.raises(UserError, match="invalid manifest") as err:
        load_manifest(tmp_path, verify=False)
    assert message in str(err.value)


def _opinions(p_ok: float, raw: float, classifier_threshold: float = 0.8) -> list[Opinion]:
    c = ClassifierHead(Manifest(visual=[classifier_entry(threshold=classifier_threshold)]).classifier("visual"))
    a = AnomalyHead(Manifest(visual=[anomaly_entry()]).anomaly("visual"))
    probs = np.array([[p_ok, (1 - p_ok) * 0.7, (1 - p_ok) * 0.3, 0.0, 0.0]], np.float32)
    heat = np.zeros((1, 1, 32, 32), np.float32)
    cb = c.batch({"probs": probs, "heatmap": heat})
    ab = a.batch({"score": np.array([raw], np.float32), "anomaly_map": np.full((1, 1, 16, 16), raw, np.float32)})
    return [c.opinion(cb, 0), a.opinion(ab, 0)]


def test_classifier_alone_scores_one_minus_p_ok() -> None:
    only = _opinions(0.3, 0.0)[:1]
    d = decide(only, "ok")
    assert d.score == pytest.approx(0.7) and not d.defect and d.label == "ok" and d.anomaly_score is None
    d = decide(_opinions(0.1, 0.0)[:1], "ok")
    assert d.score == pytest.approx(0.9) and d.defect and d.label == "scratch"


def test_anomaly_alone_is_half_at_its_threshold() -> None:
    assert anomaly_score(2.0, 2.0, 0.5) == pytest.approx(0.5)
    d = decide(_opinions(0.9, 2.2)[1:], "ok")
    assert d.defect and d.label == "anomaly" and d.score == pytest.approx(d.anomaly_score) and d.score > 0.5
    assert not decide(_opinions(0.9, 1.8)[1:], "ok").defect


@pytest.mark.parametrize("p_ok,raw,defect,label", [
    (0.95, 1.0, False, "ok"),  # neither flags it
    (0.05, 1.0, True, "scratch"),  # the classifier names it
    (0.95, 3.0, True, "anomaly"),  # only the anomaly model flags it
    (0.05, 3.0, True, "scratch"),  # both: the classifier's type
    (0.3, 3.0, True, "anomaly"),  # the classifier leans to scratch but stays under its threshold
])
def test_both_models_either_flags_and_the_classifier_names_the_type(p_ok: float, raw: float, defect: bool,
                                                                     label: str) -> None:
    d = decide(_opinions(p_ok, raw), "ok")
    assert (d.defect, d.label) == (defect, label)
    assert (d.score >= 0.5) == defect and 0.0 <= d.score <= 1.0 and d.anomaly_score is not None


def test_combined_score_rises_with_either_model() -> None:
    by_raw = [decide(_opinions(0.6, raw), "ok").score for raw in np.linspace(0.0, 5.0, 40)]
    by_p = [decide(_opinions(p, 1.0), "ok").score for p in np.linspace(1.0, 0.0, 40)]
    assert all(np.diff(by_raw) >= 0) and all(np.diff(by_p) >= 0)
    assert lift(0.8, 0.8) == 0.5 and lift(0.0, 0.3) == 0.0 and lift(1.0, 0.3) == 1.0


def test_decision_labels_add_anomaly_only_with_an_anomaly_model() -> None:
    m = Manifest(visual=[classifier_entry(), anomaly_entry()])
    assert decision_labels(list(m.entries("visual"))) == [*LABELS, "anomaly"]
    assert decision_labels([m.classifier("visual")]) == list(LABELS)
    assert decision_labels([m.anomaly("visual")]) == ["ok", "anomaly"]


def test_inference_batch_is_threshold_free() -> None:
    c = ClassifierHead(Manifest(visual=[classifier_entry()]).classifier("visual"))
    b = c.batch({"probs": np.array([[0.25, 0.75, 0, 0, 0]], np.float32), "heatmap": np.ones((1, 1, 4, 4), np.float32)})
    assert isinstance(b, InferenceBatch) and b.pred_score[0] == pytest.approx(0.75) and b.anomaly_map.shape == (1, 4, 4)
    assert c.opinion(b, 0, threshold=0.7).flagged and not c.opinion(b, 0, threshold=0.9).flagged


def test_anomaly_box_hugs_a_strong_defect_not_its_halo() -> None:
    """A strong defect lifts the cells around it over the fixed map threshold too (the map is
    smoothed, coarse scales spread); the box is cut relative to the map's peak instead."""
    from edge_inspector.inspectors.visual_model import heatmap_bbox

    raw = np.full((32, 32), 1.0, np.float32)  # a typical good part
    raw[8:20, 8:20] = 2.5  # halo: over map_threshold (2.0)
    raw[12:15, 12:15] = 9.0  # the defect
    batch = InferenceBatch(pred_score=np.array([9.0], np.float32), anomaly_map=raw[None])
    with_typical = AnomalyHead(Manifest(visual=[anomaly_entry(typical=1.0)]).anomaly("visual")).opinion(batch, 0)
    assert heatmap_bbox(with_typical.cell_map, with_typical.map_threshold, (256, 256)) == [96, 96, 24, 24]
    # a model learnt before ``typical`` was recorded: the cells over map_threshold, as they were
    without = AnomalyHead(Manifest(visual=[anomaly_entry()]).anomaly("visual")).opinion(batch, 0)
    assert heatmap_bbox(without.cell_map, without.map_threshold, (256, 256)) == [64, 64, 96, 96]
