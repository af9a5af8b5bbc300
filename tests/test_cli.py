"""The `ra3lab` command: the JSON contract, clear errors before work, cached runs."""

import json
import subprocess
import sys

import pytest

from ra3lab.cli import main
from ra3lab.config import compose_experiment
from ra3lab.errors import ConfigError

T1_SMALL = ["n_instances=2", "mc_instances=1", "mc_episodes=20", "mc_horizon=60"]


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_list_names_experiments_and_envs(capsys):
    assert main(["list", "--json"]) == 0
    listing = last_json(capsys)
    assert {"t1_regret_decomposition", "t2_pruning", "t3_horizon", "t4_abstraction"} <= set(listing["experiments"])
    assert {"chain", "star", "random_dense"} <= set(listing["envs"])


def test_list_prints_a_table_with_the_description_of_every_shipped_file(capsys):
    assert main(["list", "--json"]) == 0
    listing = last_json(capsys)
    assert set(listing) == {"experiments", "envs", "sweeps", "spaces"}
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for group, described in listing.items():
        assert described, group
        for name, description in described.items():
            assert description, f"{group}/{name}.yaml does not open with a comment line that describes it"
            row = next(line for line in lines if f"│ {group.removesuffix('s')} " in line and f"│ {name} " in line)
            assert description[:30] in row, row


def test_a_description_is_the_first_comment_line_of_a_file(tmp_path):
    from ra3lab.files import describe

    path = tmp_path / "f.yaml"
    path.write_text("# @package _global_\n\n# What it is.\n# More about it.\nkey: 1  # not this\n")
    assert describe(path) == "What it is."
    path.write_text("key: 1\n# a comment further down does not describe the file\n")
    assert describe(path) == ""


def test_run_prints_summary_as_last_json_line_and_reuses_it(capsys, isolated_runs):
    assert main(["run", "t1_regret_decomposition", *T1_SMALL, "--json"]) == 0
    first = last_json(capsys)
    assert first["cached"] is False and first["lemma_3_2_max_residual"] < 1e-9
    run_dir = isolated_runs / "t1_regret_decomposition"
    assert str(run_dir) in first["run_dir"]
    assert main(["run", "t1_regret_decomposition", *T1_SMALL, "--json"]) == 0
    second = last_json(capsys)
    assert second["cached"] is True and second["run_dir"] == first["run_dir"]
    assert main(["run", "t1_regret_decomposition", *T1_SMALL, "--json", "--force"]) == 0
    third = last_json(capsys)
    assert third["cached"] is False
    assert third["lemma_3_2_max_residual"] == first["lemma_3_2_max_residual"]  # same config, same numbers


@pytest.mark.parametrize("argv, field, hint", [
    (["run", "t9"], "experiment", "t1_regret_decomposition"),
    (["run", "t3_horizon", "nonsense=1"], "nonsense", "taus"),
    (["run", "t3_horizon", "env=nowhere"], "env", "chain"),
    (["run", "t3_horizon", "eps=-1"], "eps", "> 0"),
    (["run", "t3_horizon", "gammas=[0.9,1.5]"], "gammas", "(0, 1)"),
    (["run", "t3_horizon", "env.slip=1.5"], "slip", "slip"),
    (["run", "t2_pruning", "rule=biggest"], "rule", "observed"),
    (["run", "t2_pruning", "delta=0"], "delta", "(0, 1)"),
    (["bench", "nothing"], "bench", "mdp"),
    (["run", "t4_abstraction", "env=star"], "vocab_sizes", "ra3lab.envs.star.star takes no n_actions"),
])
def test_bad_input_is_a_clear_error_before_any_run(argv, field, hint, capsys, isolated_runs):
    assert main([*argv, "--json"]) == 2
    captured = capsys.readouterr()
    error = json.loads(captured.out.strip().splitlines()[-1])
    assert error["field"].endswith(field) and hint in error["error"]
    assert "ra3lab: error:" in captured.err
    assert not isolated_runs.exists()  # nothing was started


def test_quick_profile_and_overrides_compose():
    config = compose_experiment("t3_horizon", ["learner.seeds=2"], quick=True)
    assert config.learner.seeds == 2 and config.env.n_states == 20
    assert compose_experiment("t4_abstraction", ["env=star"]).env._target_.endswith("star")


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as error:
        compose_experiment("t1_regret_decomposition", ["n_instance=3"])
    assert "n_instances" in str(error.value) and "+n_instance" in str(error.value)


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "ra3lab.cli", "list", "--json"], capture_output=True, text=True,
                         check=True)
    assert "t3_horizon" in json.loads(out.stdout.strip().splitlines()[-1])["experiments"]


def test_overrides_may_follow_options(capsys):
    assert main(["run", "t1_regret_decomposition", "--json", *T1_SMALL]) == 0
    assert last_json(capsys)["n_instances"] == 2
    assert main(["list", "stray"]) == 2


def test_reusing_a_run_from_other_code_says_so(capsys, isolated_runs):
    assert main(["run", "t1_regret_decomposition", *T1_SMALL, "--json"]) == 0
    provenance = next(isolated_runs.glob("t1_regret_decomposition/*/provenance.json"))
    record = json.loads(provenance.read_text())
    provenance.write_text(json.dumps({**record, "commit": "0" * 40}))
    assert main(["run", "t1_regret_decomposition", *T1_SMALL, "--json"]) == 0
    assert "computed at commit 0000000000" in capsys.readouterr().err


def test_compose_points_gives_what_hydra_composes():
    from omegaconf import OmegaConf

    from ra3lab.config import _compose, compose_points, one_name_as_list, quick_overrides

    def hydra(point, quick):
        """Hydra's own composition, one name given for a list of names made a list (``rule=top_k``)."""
        configs = [_compose("t2_pruning", (quick_overrides("t2_pruning") if quick else []) + extra)
                   for extra in ([], point)]
        for config in configs:
            OmegaConf.resolve(config)
        return one_name_as_list(*configs)

    points = [["seed=3"], ["env=star", "seed=1"], ["+rule_kwargs.k=4", "rule=top_k"], ["env=star", "env.n_corridors=5"],
              ["~rule_kwargs"]]
    for quick in (False, True):
        fast = compose_points("t2_pruning", points, quick=quick)
        assert fast == [hydra(point, quick) for point in points]
        assert fast[:1] == [compose_experiment("t2_pruning", points[0], quick=quick)]
    with pytest.raises(ConfigError, match="in the point: nonsense=1"):
        compose_points("t2_pruning", [["seed=1"], ["nonsense=1"]])


@pytest.mark.parametrize("argv, field, hint", [
    (["run", "t3_horizon", "--quick", "env.n_states=abc"], "env.n_states", "must be an integer, like its default 20"),
    (["run", "t3_horizon", "--quick", "gammas=0.9"], "gammas", "one value is written gammas=[0.9]"),
    (["run", "t3_horizon", "--quick", "learner.seeds=2.5"], "learner.seeds", "must be an integer"),
    (["run", "t3_horizon", "gammas=[0.9,abc]"], "gammas", "items are each a number"),
    (["run", "t4_abstraction", "surface.rl_budget=true"], "surface.rl_budget", "must be an integer"),
    (["run", "codeworld_rlvr", "seeds=range(0,5)"], "seeds", "a list is written [0,1,2]"),
    (["run", "codeworld_rlvr", "inits=[1,2]"], "inits", "items are each a string"),
])
def test_a_value_of_the_wrong_type_is_refused_before_any_work(argv, field, hint, capsys, isolated_runs):
    assert main([*argv, "--json"]) == 2
    error = last_json(capsys)
    assert error["field"] == field and hint in error["error"]
    assert not isolated_runs.exists()


def test_types_follow_the_experiments_own_values():
    config = compose_experiment("t3_horizon", ["gammas=[1]", "eps=1", "learner.seeds=3"])
    assert list(config.gammas) == [1] and config.eps == 1 and config.learner.seeds == 3   # an int is a number
    assert list(compose_experiment("t2_pruning", ["rule=top_k"]).rule) == ["top_k"]   # one name: a list of it
    assert list(compose_experiment("codeworld_rlvr", ["inits=ntp"]).inits) == ["ntp"]  # never the name's letters
    assert compose_experiment("t4_abstraction", ["vocab_sizes=null"]).vocab_sizes is None   # the study judges None
    assert compose_experiment("t3_horizon", ["+extra=abc"]).extra == "abc"            # new keys have no type yet


def test_a_sweep_point_of_the_wrong_type_is_named():
    from ra3lab.config import compose_points

    with pytest.raises(ConfigError, match=r"must be an integer.*in the point: seed=1 learner.seeds=2.5") as error:
        compose_points("t3_horizon", [["seed=0"], ["seed=1", "learner.seeds=2.5"]])
    assert error.value.field == "learner.seeds"


@pytest.mark.parametrize("argv, field", [
    (["run", "--json"], "experiment"),
    (["theory", "chek", "--json"], "action"),
    (["--json", "nothing"], "command"),
    (["run", "t3_horizon", "--json", "--workers", "2"], "arguments"),
    (["--json", "sweep", "t2_rules", "--workers", "two"], "workers"),
])
def test_a_command_line_argparse_refuses_is_one_json_object(argv, field, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    error = json.loads(captured.out.strip().splitlines()[-1])
    assert error["field"] == field and error["usage"].startswith("usage: ra3lab")
    assert captured.out.strip().count("\n") == 0                    # one object, nothing else on stdout
    assert "usage: ra3lab" in captured.err and "error:" in captured.err


def test_json_may_come_before_the_command(capsys):
    assert main(["--json", "list"]) == 0
    assert "t3_horizon" in last_json(capsys)["experiments"]


def test_a_config_error_needs_no_heavy_import():
    """What makes an error print in well under a second: the command imports torch (about 2 s) only
    once the config composed and is valid."""
    script = ("import sys; from ra3lab.cli import main; code = main(sys.argv[1:]); "
              "print(code, 'torch' in sys.modules, file=sys.stderr)")
    for argv in (["run", "t3_horizon", "nonsense=1", "--json"], ["run", "t3_horizon", "gammas=0.9", "--json"],
                 ["run", "--json"]):
        out = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, check=True)
        assert out.stderr.strip().splitlines()[-1] == "2 False", argv


def test_dry_run_validates_and_runs_nothing(capsys, isolated_runs):
    assert main(["run", "t3_horizon", "--quick", "--dry-run", "--json"]) == 0
    plan = last_json(capsys)
    assert plan["dry_run"] is True and plan["done"] is False and "t3_horizon" in plan["run_dir"]
    assert main(["run", "t3_horizon", "--quick", "eps=-1", "--dry-run", "--json"]) == 2   # the study's own checks
    assert last_json(capsys)["field"] == "eps"
    assert not isolated_runs.exists()


def _empty_row(*_, **__):
    """The degenerate case of a study's data: a learner's decision set with a row that allows nothing."""
    import torch

    from ra3lab.mdp.pruning import check_allowed

    check_allowed(torch.tensor([[True, False], [False, False]]), 2, 2)


def test_an_error_mid_run_names_the_run_the_step_and_the_cause(monkeypatch, capsys, isolated_runs):
    from ra3lab.studies import regret_decomposition

    instance = regret_decomposition.one_instance
    monkeypatch.setattr(regret_decomposition, "one_instance",
                        lambda config, index: _empty_row() if index == 1 else instance(config, index))
    assert main(["run", "t1_regret_decomposition", *T1_SMALL, "--json"]) == 1
    captured = capsys.readouterr()
    error = json.loads(captured.out.strip().splitlines()[-1])
    run_dir = next(isolated_runs.glob("t1_regret_decomposition/*"))
    assert error["run"] == str(run_dir) and error["step"] == "'T1 instances' item 1 (1)"
    assert error["cause"].startswith("ConfigError: allowed = 'a row with no decision'") and "field" not in error
    assert f"traceback: {run_dir}/status.json" in captured.err
    assert "T1 instances" in json.loads((run_dir / "status.json").read_text())["error"]


def test_an_error_outside_run_map_names_the_run_and_any_error_is_json(monkeypatch, capsys, isolated_runs):
    from ra3lab.studies import regret_decomposition

    monkeypatch.setattr(regret_decomposition, "figure", _empty_row)
    assert main(["run", "t1_regret_decomposition", *T1_SMALL, "--json"]) == 1
    error = last_json(capsys)
    assert error["step"] == "the study, outside run.map" and "allowed" in error["cause"]

    def broken(*_, **__):
        raise ValueError("a bug")

    monkeypatch.setattr(regret_decomposition, "figure", broken)
    assert main(["run", "t1_regret_decomposition", *T1_SMALL, "--json"]) == 1
    assert last_json(capsys) == {"error": "a bug", "type": "ValueError"}
    with pytest.raises(ValueError, match="a bug"):       # without --json: the traceback, as Python prints it
        main(["run", "t1_regret_decomposition", *T1_SMALL])


def test_a_run_error_crosses_process_boundaries():
    import pickle

    from ra3lab.errors import RunError

    error = pickle.loads(pickle.dumps(RunError("runs/t1/abc", "'T1 instances' item 1", "ConfigError: x")))
    assert (error.run, error.step, error.cause) == ("runs/t1/abc", "'T1 instances' item 1", "ConfigError: x")
    assert str(error) == "run runs/t1/abc failed at 'T1 instances' item 1: ConfigError: x"
