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
    out = subprocess.run([sys.executable, "-m", "ra3lab.cli", "list", "--json"], capture_output=True, text=True, check=True)
    assert "t3_horizon" in json.loads(out.stdout.strip().splitlines()[-1])["experiments"]


def test_overrides_may_follow_options(capsys):
    assert main(["run", "t1_regret_decomposition", "--json", *T1_SMALL]) == 0
    assert last_json(capsys)["n_instances"] == 2
    with pytest.raises(SystemExit):
        main(["list", "stray"])


def test_reusing_a_run_from_other_code_says_so(capsys, isolated_runs):
    assert main(["run", "t1_regret_decomposition", *T1_SMALL, "--json"]) == 0
    provenance = next(isolated_runs.glob("t1_regret_decomposition/*/provenance.json"))
    record = json.loads(provenance.read_text())
    provenance.write_text(json.dumps({**record, "commit": "0" * 40}))
    assert main(["run", "t1_regret_decomposition", *T1_SMALL, "--json"]) == 0
    assert "computed at commit 0000000000" in capsys.readouterr().err


def test_compose_points_gives_what_compose_experiment_gives():
    from ra3lab.config import compose_points

    points = [["seed=3"], ["env=star", "seed=1"], ["+rule_kwargs.k=4", "rule=top_k"], ["env=star", "env.n_corridors=5"]]
    for quick in (False, True):
        fast = compose_points("t2_pruning", points, quick=quick)
        assert fast == [compose_experiment("t2_pruning", point, quick=quick) for point in points]
    with pytest.raises(ConfigError, match="in the point: nonsense=1"):
        compose_points("t2_pruning", [["seed=1"], ["nonsense=1"]])
