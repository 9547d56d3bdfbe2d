"""GEO-Bench runner end to end on the synthetic benchmark (CPU, tiny config): linear probe on three
tasks x two seeds, the result tables, resuming, learning above chance, k-NN and the CLI."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from carl_geo.evaluation.geobench import (
    GeoBenchFormatError,
    GeoBenchSettings,
    find_tasks,
    load_task,
    run_geobench,
)
from carl_geo.evaluation.geobench.results import PAPER_RESULTS, markdown_table, summarize
from carl_geo.datasets.geobench.synthetic import write_synthetic_task

TASKS = {"m-synth-cls": ("classification", "Accuracy"), "m-synth-multilabel": ("multilabel", "MicroAP"),
         "m-synth-seg": ("segmentation", "mIoU")}


pytestmark = pytest.mark.usefixtures("one_thread_per_module")  # also around the module-scoped runs below


@pytest.fixture(scope="module")
def bench(make_geobench):
    return make_geobench(n_train=16, n_valid=6, n_test=9)


def _settings(root, out, **kw) -> GeoBenchSettings:
    base = dict(root=root, checkpoint="random", out=out, tasks=["all"], mode="linear", seeds=2, config="tiny",
                epochs=2, batch_size=8, image_size=0, val_every=1, num_workers=0, progress=False)
    base.update(kw)
    return GeoBenchSettings(**base)


@pytest.fixture(scope="module")
def evaluated(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    report = run_geobench(_settings(bench, out), log=lambda msg: None)
    return out, report


def test_end_to_end_tables(evaluated):
    out, report = evaluated
    assert sorted(report.ran) == sorted(f"{t}/seed{s}" for t in TASKS for s in (0, 1))
    for name in ("results.csv", "results.json", "results.md", "results.png", "runs.csv", "settings.json"):
        assert (out / name).is_file(), name
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with open(out / "results.csv") as fd:
        rows = list(csv.DictReader(fd))
    assert [r["task"] for r in rows] == sorted(TASKS)
    assert set(rows[0]) >= {"task", "kind", "metric", "partition", "mode", "n_seeds", "mean", "std", "paper", "scores"}
    for r in rows:
        assert (r["kind"], r["metric"]) == TASKS[r["task"]]
        assert (r["partition"], r["mode"], r["n_seeds"]) == ("default", "linear", "2")
        scores = [float(s) for s in r["scores"].split()]
        assert len(scores) == 2 and all(0.0 <= s <= 100.0 for s in scores)
        assert float(r["mean"]) == pytest.approx(statistics.fmean(scores), abs=1e-3)
        assert float(r["std"]) == pytest.approx(statistics.stdev(scores), abs=1e-3)
        assert r["paper"] == ""  # no paper number for synthetic tasks

    md = (out / "results.md").read_text()
    assert "| Task | Metric | Partition | Mode | Measured (%) | Seeds | CARL paper (%) | Δ | Other (%) |" in md
    assert sum(line.startswith("| m-synth-") for line in md.splitlines()) == 3
    summary = json.loads((out / "results.json").read_text())
    assert len(summary["results"]) == 3 and summary["meta"]["settings"]["epochs"] == 2


def test_run_records_and_logs(evaluated):
    out, report = evaluated
    assert len(report.records) == 6
    for rec in report.records:
        run_dir = out / "runs" / rec["task"] / "default" / "linear" / f"seed{rec['seed']}"
        assert json.loads(run_dir.with_suffix(".json").read_text())["score"] == rec["score"]
        assert rec["dropped_bands"] == ["Elevation"] and len(rec["bands"]) == 6
        assert rec["sizes"] == {"train": 16, "valid": 6, "test": 9}
        assert rec["best_epoch"] in (1, 2) and 0.0 <= rec["val_best"] <= 1.0
        assert all(0.0 <= v <= 1.0 for k, v in rec["test"].items() if k != "test_loss")
        assert rec["score"] == pytest.approx(100 * rec["test"][f"test_{rec['metric']}"])
        with open(run_dir / "metrics.csv") as fd:
            log = list(csv.DictReader(fd))
        assert any(row.get(f"val_{'mIoU' if rec['kind'] == 'segmentation' else rec['metric']}") for row in log)
        if rec["kind"] == "segmentation":  # upstream mIoU = mean over all K per-class IoUs
            ious = rec["per_class_iou"]
            assert list(ious) == ["soil", "vegetation", "water"]
            assert rec["test"]["test_mIoU"] == pytest.approx(statistics.fmean(ious.values()), abs=1e-6)


def test_rerun_skips_finished_runs(bench, evaluated):
    out, _ = evaluated
    record = out / "runs" / "m-synth-seg" / "default" / "linear" / "seed1.json"
    stamp = record.stat().st_mtime_ns
    report = run_geobench(_settings(bench, out), log=lambda msg: None)
    assert report.ran == [] and len(report.skipped) == 6
    assert record.stat().st_mtime_ns == stamp
    assert len(report.rows) == 3
    with pytest.raises(ValueError, match="epochs: 2 there, 3 now"):
        run_geobench(_settings(bench, out, epochs=3), log=lambda msg: None)


def test_scratch_training_beats_chance(tmp_path):
    """A learnable spectral signal (class = material spectrum): far above the 33 % chance level.

    A randomly initialised tiny CARL maps all inputs to nearly the same features (per-dimension
    spread ~1 % of their size), so its frozen linear probe stays at chance (a sanity floor); the
    end-to-end check therefore trains backbone and head together (mode "scratch")."""
    write_synthetic_task(tmp_path / "gb" / "b" / "m-synth-cls", "classification", ["water", "vegetation", "soil"],
                         n_train=24, n_valid=9, n_test=15, size=8)
    settings = _settings(tmp_path / "gb", tmp_path / "out", mode="scratch", seeds=1, epochs=10, val_every=5,
                         batch_size=4)
    report = run_geobench(settings, log=lambda msg: None)
    (rec,) = report.records
    assert rec["mode"] == "scratch" and rec["metric"] == "Accuracy"
    assert rec["score"] >= 75.0, rec["test"]


def test_corrupt_sample_stops_the_run_with_its_name(tmp_path):
    root = tmp_path / "gb"
    folder = write_synthetic_task(root / "b" / "m-synth-cls", "classification", ["water", "soil"], n_train=8,
                                  n_valid=4, n_test=4, size=8)
    task = load_task(folder)
    bad = task.sample_path(task.partition()["train"][5])
    bad.write_bytes(b"\x00" * 300)
    with pytest.raises(GeoBenchFormatError, match=bad.name):
        run_geobench(_settings(root, tmp_path / "out", seeds=1, epochs=1), log=lambda msg: None)
    assert not list((tmp_path / "out" / "runs").glob("**/*.json"))


def test_cli_knn_with_a_carl_geo_checkpoint(bench, tmp_path, capsys, tiny_model):
    from carl_geo import save_carl
    from carl_geo.cli import build_parser, main

    assert "geobench" in build_parser().format_help()
    ckpt = save_carl(tiny_model, tmp_path / "tiny.pt")  # its stored (tiny) config is used
    out = tmp_path / "knn"
    argv = ["geobench", "--root", str(bench), "--checkpoint", str(ckpt), "--tasks", "m-synth-cls,m-synth-multilabel",
            "--mode", "knn", "--image-size", "0", "--num-workers", "0", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "| m-synth-cls | Accuracy | default | knn |" in text and "| m-synth-multilabel | MicroAP |" in text
    recs = {r["task"]: r for r in (json.loads(p.read_text()) for p in out.glob("runs/*/*/knn/seed0.json"))}
    assert set(recs) == {"m-synth-cls", "m-synth-multilabel"}
    assert all(r["k"] in (5, 10, 20) and 0 <= r["score"] <= 100 for r in recs.values())
    assert main(argv) == 0 and "0 run(s) done, 2 skipped" in capsys.readouterr().out

    assert main(["geobench", "--root", str(bench), "--checkpoint", "random", "--tasks", "m-nope",
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "m-nope not found" in err and "m-synth-cls" in err
    assert main(["geobench", "--root", str(bench), "--checkpoint", "random", "--tasks", "m-synth-seg",
                 "--mode", "knn", "--out", str(tmp_path / "y")]) == 2
    assert "segmentation task" in capsys.readouterr().err
    assert main(["geobench", "--root", str(bench), "--checkpoint", str(tmp_path / "missing.ckpt"),
                 "--out", str(tmp_path / "z")]) == 2
    assert "missing.ckpt" in capsys.readouterr().err


def test_paper_numbers_are_placed_beside_comparable_rows():
    recs = [{"task": "m-eurosat", "kind": "classification", "partition": "default", "mode": "linear", "seed": s,
             "metric": "Accuracy", "score": v} for s, v in enumerate((80.0, 82.0, 84.0))]
    recs.append({"task": "m-eurosat", "kind": "classification", "partition": "0.10x_train", "mode": "linear",
                 "seed": 0, "metric": "Accuracy", "score": 60.0})
    rows = summarize(recs)
    full = next(r for r in rows if r["partition"] == "default")
    assert (full["mean"], full["std"], full["paper"]) == (82.0, 2.0, PAPER_RESULTS["m-eurosat"].value)
    assert full["delta"] == pytest.approx(82.0 - 84.4)
    assert next(r for r in rows if r["partition"] != "default")["paper"] is None
    table = markdown_table(rows)
    assert "| m-eurosat | Accuracy | default | linear | 82.0 ± 2.0 | 3 | 84.4 | -2.4 | – |" in table
    assert {t: (r.metric, r.value) for t, r in PAPER_RESULTS.items()} == {
        "m-bigearthnet": ("MicroAP", 69.0), "m-eurosat": ("Accuracy", 84.4), "m-forestnet": ("Accuracy", 47.0),
        "m-SA-crop-type": ("mIoU", 26.5), "m-cashew-plantation": ("mIoU", 18.9)}
    for r in PAPER_RESULTS.values():  # every published number is listed with its protocol and source
        assert f"| {r.task} | {r.metric} | {r.value:.1f} | linear probe | {r.source} |" in table
    assert "one run, unseeded" in table and "3 seeds" not in table


def test_paper_numbers_need_the_upstream_protocol():
    def rec(**settings):
        return {"task": "m-SA-crop-type", "kind": "segmentation", "partition": "default", "mode": "linear", "seed": 0,
                "metric": "mIoU", "score": 25.0,
                "settings": {"checkpoint": "/x/ssl.ckpt", "image_size": 128, "normalization": "image",
                             "band_order": "stored", "head": "linear", **settings}}

    assert summarize([rec()])[0]["paper"] == 26.5
    for change in ({"image_size": 0}, {"normalization": "band"}, {"band_order": "corrected"}, {"head": "upernet"},
                   {"checkpoint": "random"}):
        assert summarize([rec(**change)])[0]["paper"] is None, change
    cls = {**rec(head="upernet"), "task": "m-eurosat", "kind": "classification", "metric": "Accuracy"}
    assert summarize([cls])[0]["paper"] == 84.4  # the segmentation head does not matter for classification


def test_default_tasks_are_the_papers(bench, tmp_path):
    with pytest.raises(ValueError, match=r"m-bigearthnet, m-eurosat, m-forestnet, m-SA-crop-type, "
                                         r"m-cashew-plantation not found"):
        run_geobench(_settings(bench, tmp_path / "o", tasks=None), log=lambda msg: None)
    assert set(find_tasks(bench)) == set(TASKS)
