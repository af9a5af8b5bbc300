"""The run format: stable ids, atomic files, provenance, metrics."""

import json

from omegaconf import OmegaConf

from ra3lab.runs import Run, atomic_write, run_id


def test_run_id_depends_on_config_only():
    a = OmegaConf.create({"seed": 0, "env": {"n": 3}})
    b = OmegaConf.create({"env": {"n": 3}, "seed": 0})
    c = OmegaConf.create({"seed": 1, "env": {"n": 3}})
    assert run_id(a) == run_id(b)
    assert run_id(a) != run_id(c)


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "deep" / "summary.json"
    atomic_write(path, "{}")
    atomic_write(path, '{"x": 1}')
    assert json.loads(path.read_text()) == {"x": 1}
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]


def test_run_records_config_provenance_metrics_and_summary(tmp_path):
    config = OmegaConf.create({"seed": 7, "n": 2})
    run = Run(tmp_path / "r", config)
    assert not run.done
    run.start(tmp_path)
    run.log(0, **{"theory/x": 1.5})
    run.log(1, **{"theory/x": 2.5})
    summary = run.finish({"score": 3})
    assert run.done and run.summary() == summary
    assert summary["score"] == 3 and summary["wall_time_s"] >= 0
    assert OmegaConf.load(run.path / "config.yaml") == config
    provenance = json.loads((run.path / "provenance.json").read_text())
    assert provenance["seed"] == 7
    assert {"commit", "dirty", "versions", "host", "wall_time_s"} <= provenance.keys()
    assert provenance["versions"]["torch"].startswith("2.")
    lines = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [0, 1] and lines[1]["theory/x"] == 2.5


def test_restarting_an_unfinished_run_truncates_its_metrics(tmp_path):
    run = Run(tmp_path / "r", OmegaConf.create({"seed": 0}))
    run.start(tmp_path)
    run.log(0, a=1)
    Run(tmp_path / "r", run.config).start(tmp_path)
    assert (run.path / "metrics.jsonl").read_text() == ""


def test_map_resumes_from_its_checkpoint_with_non_finite_values(tmp_path):
    config = OmegaConf.create({"seed": 0})
    run = Run(tmp_path / "r", config)
    run.start(tmp_path)
    calls = []

    def work(step, item):
        calls.append(step)
        if step == 2:
            raise KeyboardInterrupt
        return {"x": item, "never": float("inf")}

    try:
        run.map(work, [10, 20, 30], "items", "test")
    except KeyboardInterrupt:
        pass
    resumed = Run(tmp_path / "r", config)
    resumed.start(tmp_path)
    results = resumed.map(lambda step, item: {"x": item, "never": float("inf")}, [10, 20, 30], "items", "test")
    assert calls == [0, 1, 2]
    assert [r["x"] for r in results] == [10, 20, 30] and results[0]["never"] == float("inf")
    lines = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [0, 1, 2] and lines[0]["test/never"] is None   # strict JSON
