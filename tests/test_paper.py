"""The appendix from pinned runs (`ra3lab paper pin|build|check`) on a small paper over real T1 runs: only pinned
runs are read, a missing or broken pin fails with its fix, and the check catches drift."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from ra3lab.appendix.build import Paper, build, check_paper, composed_id, pin
from ra3lab.appendix.numbers import Number, formatted, load_numbers, lookup, macros
from ra3lab.appendix.pins import Pin, check_present
from ra3lab.cli import main
from ra3lab.errors import ConfigError

TEXT = r"""\documentclass{article}
\usepackage{graphicx,booktabs,longtable}
\input{build/numbers.tex}
\begin{document}
T1 ran \Instances{} instances; the largest residual is \Residual{}.
\includegraphics[width=\textwidth]{build/figures/t1.pdf}
\input{build/provenance.tex}
\input{build/configs.tex}
\end{document}
"""
CONTENT = {"figures": {"t1": {"kind": "run", "source": "t1", "file": "t1_regret_decomposition"}},
           "numbers": {"Instances": {"source": "t1", "key": "n_instances", "format": "d"},
                       "Residual": {"source": "t1", "key": "lemma_3_2_max_residual", "format": ".1e"}}}
T1 = ["t1_regret_decomposition", "--quick", "n_instances=2", "mc_instances=0"]


@pytest.fixture
def small_paper(tmp_path, isolated_runs, capsys) -> Paper:
    """A paper over one pinned T1 run (run here), pinned."""
    folder = tmp_path / "paper"
    folder.mkdir()
    (folder / "appendix.tex").write_text(TEXT)
    (folder / "content.yaml").write_text(yaml.safe_dump(CONTENT))
    (folder / "runs.yaml").write_text(yaml.safe_dump({"t1": {"experiment": T1[0], "quick": True,
                                                             "overrides": T1[2:]}}))
    assert main(["run", *T1, "--json"]) == 0
    capsys.readouterr()
    paper = Paper(folder, isolated_runs)
    pin(paper)
    return paper


def test_pin_names_the_run_its_config_composes_to_with_commit_and_uses(small_paper):
    pins = yaml.safe_load((small_paper.folder / "runs.yaml").read_text())
    run = next((small_paper.runs / T1[0]).iterdir())
    assert pins["t1"]["id"] == run.name and pins["t1"]["used_by"] == ["figure t1", "numbers (t1)"]
    assert pins["t1"]["commit"] == json.loads((run / "provenance.json").read_text())["commit"]
    numbers = (small_paper.folder / "numbers.tex").read_text()
    assert r"\newcommand{\Instances}{2}" in numbers        # n_instances=2, the pinned run's
    assert set(json.loads((small_paper.folder / "figures.json").read_text())) == {"t1"}


def test_a_newer_run_of_the_same_experiment_changes_nothing_and_an_unchanged_build_rebuilds_nothing(small_paper,
                                                                                                  capsys):
    first = build(small_paper, latex=False)
    numbers = (small_paper.out / "numbers.tex").read_text()
    assert first["rebuilt"] and build(small_paper, latex=False) == {"rebuilt": False, "pdf": None}
    assert main(["run", T1[0], "--quick", "n_instances=3", "mc_instances=0", "--json"]) == 0   # newest T1 run
    capsys.readouterr()
    assert build(small_paper, latex=False, force=True)["rebuilt"]
    assert (small_paper.out / "numbers.tex").read_text() == numbers
    assert check_paper(small_paper)["drift"] == []


def test_a_deleted_pinned_run_fails_the_build_with_the_command_that_recreates_it(small_paper):
    shutil.rmtree(next((small_paper.runs / T1[0]).iterdir()))
    with pytest.raises(ConfigError) as error:
        build(small_paper, latex=False, force=True)
    assert error.value.field == "pins.t1"
    assert "`ra3lab run t1_regret_decomposition --quick n_instances=2 mc_instances=0`" in str(error.value)
    assert "--launcher slurm --profile <yours>" in str(error.value)


def test_a_pin_of_another_experiments_run_a_missing_key_and_a_corrupted_summary_name_the_pin(small_paper):
    runs = yaml.safe_load((small_paper.folder / "runs.yaml").read_text())
    runs["t1"]["experiment"] = "t3_horizon"
    (small_paper.folder / "runs.yaml").write_text(yaml.safe_dump(runs))
    with pytest.raises(ConfigError, match="is a run of t1_regret_decomposition, not of t3_horizon") as error:
        build(small_paper, latex=False)
    assert error.value.field == "pins.t1.experiment"
    runs["t1"]["experiment"] = T1[0]
    (small_paper.folder / "runs.yaml").write_text(yaml.safe_dump(runs))

    content = {**CONTENT, "numbers": {"Gone": {"source": "t1", "key": "lemma.residual"}}}
    (small_paper.folder / "content.yaml").write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError, match="has no 'lemma'.*lemma_3_2_max_residual") as error:
        build(small_paper, latex=False)
    assert error.value.field == "numbers.Gone.key"
    (small_paper.folder / "content.yaml").write_text(yaml.safe_dump(CONTENT))

    summary = next((small_paper.runs / T1[0]).iterdir()) / "summary.json"
    summary.write_text(summary.read_text()[:40])
    with pytest.raises(ConfigError, match="is corrupted.*recreate it with `ra3lab run t1_regret") as error:
        build(small_paper, latex=False)
    assert error.value.field == "pins.t1"


def test_check_fails_on_numbers_or_figures_that_drifted_from_the_committed_record(small_paper):
    assert check_paper(small_paper)["numbers"] == 2
    record = small_paper.folder / "numbers.tex"
    record.write_text(record.read_text().replace(r"\newcommand{\Instances}{2}", r"\newcommand{\Instances}{3}"))
    with pytest.raises(ConfigError, match=r"Instances\}\{2\}"):
        check_paper(small_paper)
    pin(small_paper)
    figures = small_paper.folder / "figures.json"
    figures.write_text(json.dumps({"t1": "0" * 64}))
    with pytest.raises(ConfigError, match="figure t1: its data differ"):
        check_paper(small_paper)


def test_the_pdf_is_built_once_and_rebuilt_byte_for_byte(small_paper):
    if shutil.which("latexmk") is None:
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(
            "LaTeX is absent: run `make paper` (or bash paper/install.sh as root); CI installs it")
    pdf = Path(build(small_paper)["pdf"])
    first = pdf.read_bytes()
    assert first.startswith(b"%PDF") and not build(small_paper)["rebuilt"]
    pdf.unlink()
    assert build(small_paper, force=True)["rebuilt"] and pdf.read_bytes() == first


def test_numbers_read_dotted_and_bracketed_keys_and_format_each_value():
    summary = {"P0": {"ra3_c0.05": {"measured": 0.0781, "low": 0.05, "high": None}}, "verdicts": {"P0/base": False},
               "curve": [0.1, 0.25]}
    number = Number("PZero", "plan", ("P0[ra3_c0.05].measured", "P0[ra3_c0.05].low", "P0[ra3_c0.05].high"), ".2f",
                    "{} [{}, {}]")
    verdict = Number("Base", "plan", ("verdicts[P0/base]",), "verdict")
    text = macros([number, verdict, Number("Last", "plan", ("curve.-1",), ".0%")], {"plan": summary})
    assert r"\newcommand{\PZero}{0.08 [0.05, --]}" in text and r"\newcommand{\Base}{fails}" in text
    assert r"\newcommand{\Last}{25\%}" in text
    assert lookup(summary, "curve.0", "k") == 0.1
    with pytest.raises(ConfigError, match="cannot format 'holds'"):
        formatted("holds", ".2f", "numbers.X.format")
    with pytest.raises(ConfigError, match="is not a pin of paper/runs.yaml: choose one of plan"):
        macros([Number("X", "t9", ("a",))], {"plan": summary})


@pytest.mark.parametrize(("entry", "field"), [
    ({"Bad_Name": {"source": "t1", "key": "a"}}, "numbers.Bad_Name"),
    ({"X": {"source": "t1"}}, "numbers.X"),
    ({"X": {"source": "t1", "key": ["a", "b"], "template": "{}"}}, "numbers.X.template"),
    ({"X": {"source": "t1", "key": "a", "unit": "s"}}, "numbers.X.unit"),
])
def test_a_malformed_number_names_its_macro_and_key(entry, field):
    with pytest.raises(ConfigError) as error:
        load_numbers(entry)
    assert error.value.field == field


def test_every_missing_pinned_run_is_listed_with_its_command(tmp_path):
    pins = {"t1": Pin("t1", T1[0], quick=True, id="000000000000"),
            "surface": Pin("surface", "t4_budget_penalty", kind="sweep", quick=True, id="111111111111")}
    with pytest.raises(ConfigError) as error:
        check_present(pins, tmp_path)
    assert error.value.field == "pins" and "`ra3lab run t1_regret_decomposition --quick`; " \
        "`ra3lab sweep t4_budget_penalty --quick`" in str(error.value)
    (tmp_path / "t4_budget_penalty" / "000000000000").mkdir(parents=True)          # the id under another experiment
    (tmp_path / "t4_budget_penalty" / "000000000000" / "summary.json").write_text("{}")
    with pytest.raises(ConfigError) as error:
        check_present(pins, tmp_path)
    assert error.value.field == "pins.surface"         # t1 is left to read_summary, which names the other experiment


def test_the_repositorys_pins_are_the_runs_their_configs_compose_to_now(isolated_runs):
    """A change of config (a default, the quick profile) that moves a pinned run's id must come with a re-pin
    (`make demo`, then `ra3lab paper pin`): otherwise CI's `paper check` fails after recomputing the demo."""
    from ra3lab.config import project_root

    pins = Paper(project_root() / "paper", isolated_runs).pins()
    assert {pin.experiment for pin in pins.values()} >= {"t1_regret_decomposition", "codeworld_plan"}
    for pin_ in pins.values():
        now = composed_id(pin_)
        assert now == pin_.id, f"pin {pin_.name}: the config now composes to {now}; re-pin with `ra3lab paper pin`"
