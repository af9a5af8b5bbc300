"""``ra3lab paper pin|build|check``: the appendix from pinned runs.

``paper/`` holds ``appendix.tex`` (the text), ``content.yaml`` (its figures and numbers, each naming a pin),
``runs.yaml`` (the pins) and the record of the pinned results, ``numbers.tex`` and ``figures.json`` (what each
figure drew), both written by ``pin``. ``build`` renders into ``paper/build/``: ``numbers.tex``, ``figures/``,
``provenance.tex`` (each pinned run's id, commit and command), ``configs.tex`` (each run's resolved config), then
``appendix.pdf`` with latexmk. Nothing is rebuilt while the inputs (pins, content, text, the pinned runs' files and
the code) are unchanged. ``check`` renders again and compares with the committed record: numbers exactly, figures
by their data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from ra3lab.appendix.figures import Figure, draw, load_figures
from ra3lab.appendix.numbers import DERIVED, Number, load_numbers, macros
from ra3lab.appendix.pins import Pin, check_present, load_pins, missing, read_summary, save_pins
from ra3lab.config import flat_keys
from ra3lab.errors import ConfigError, check
from ra3lab.log import say

PDF_DATE = "0"       # SOURCE_DATE_EPOCH of the PDF unless set: the same pinned runs give the same bytes


@dataclass(frozen=True)
class Paper:
    """The appendix's sources in ``folder`` (paper/) and the runs folder they pin runs of."""

    folder: Path
    runs: Path

    @property
    def out(self) -> Path:
        return self.folder / "build"

    def pins(self) -> dict[str, Pin]:
        return load_pins(self.folder / "runs.yaml")

    def content(self, pins: dict[str, Pin]) -> tuple[list[Figure], list[Number]]:
        path = self.folder / "content.yaml"
        check(path.is_file(), "content", str(path), "no content file: the repository ships paper/content.yaml")
        raw = yaml.safe_load(path.read_text()) or {}
        return load_figures(raw.get("figures") or {}, pins), load_numbers(raw.get("numbers") or {})


def sources(pins: dict[str, Pin], runs: Path) -> dict[str, dict]:
    """Every run pin's summary by pin name, and the derived sources (:data:`~ra3lab.appendix.numbers.DERIVED`)
    whose pins are all there."""
    found = {name: read_summary(pin, runs) for name, pin in pins.items() if pin.kind == "run"}
    for name, (needs, derive) in DERIVED.items():
        if all(need in found for need in needs):
            found[name] = derive(*(found[need] for need in needs))
    return found


def render(paper: Paper, out: Path) -> dict:
    """Write numbers.tex, figures/, provenance.tex and configs.tex under ``out``; returns the figures' data. Every
    pin is read before anything is written, so a missing or broken one fails first."""
    pins = paper.pins()
    figures, numbers = paper.content(pins)
    check_present(pins, paper.runs)
    text = macros(numbers, sources(pins, paper.runs)) + pin_macros(pins)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "numbers.tex").write_text(text)
    data = {}
    for figure in figures:
        say("paper", f"figure {figure.name} ({figure.kind}) from {', '.join(figure.pins())}")
        data[figure.name] = json.loads(json.dumps(draw(figure, pins, paper.runs, out / "figures"), default=str))
    (out / "provenance.tex").write_text(provenance_table(pins, paper.runs))
    (out / "configs.tex").write_text(config_tables(pins, paper.runs))
    return data


def fingerprint(paper: Paper) -> str:
    """A hash of everything the appendix is built from: paper/'s sources, the pinned runs' files (not their
    checkpoints) and the package's code."""
    digest = hashlib.sha256()
    files = [paper.folder / name for name in ("appendix.tex", "content.yaml", "runs.yaml")]
    for pin in paper.pins().values():
        folder = pin.path(paper.runs)
        files += [folder / name for name in ("summary.json", "config.yaml", "provenance.json", "curves.csv",
                                             "manifest.jsonl")]
        files += sorted((folder / "figures").glob("*.pdf"))
        if pin.kind == "sweep" and (folder / "manifest.jsonl").is_file():
            from ra3lab.sweep.status import read_manifest, run_path

            files += [run_path(folder, entry) / "summary.json" for entry in read_manifest(folder)]
    files += sorted(Path(__file__).resolve().parents[1].rglob("*.py"))
    for path in files:
        digest.update(str(path).encode() + (path.read_bytes() if path.is_file() else b"(absent)"))
    return digest.hexdigest()


def build(paper: Paper, latex: bool = True, force: bool = False) -> dict:
    """Render the appendix into paper/build and compile appendix.pdf (with ``latex``); nothing is redone while
    :func:`fingerprint` is unchanged (unless ``force``)."""
    out, stamp = paper.out, paper.out / ".fingerprint"
    pdf = out / "appendix.pdf"
    now = fingerprint(paper)
    if not force and stamp.is_file() and stamp.read_text() == now and (pdf.is_file() or not latex):
        say("paper", f"up to date (pins, content, text, pinned runs and code unchanged): nothing rebuilt, {pdf}")
        return {"rebuilt": False, "pdf": str(pdf) if latex else None}
    render(paper, out)
    if latex:
        compile_pdf(paper.folder, out)
    stamp.write_text(now)
    say("paper", f"built {pdf if latex else out}")
    return {"rebuilt": True, "pdf": str(pdf) if latex else None}


def compile_pdf(folder: Path, out: Path) -> None:
    """latexmk on ``folder``/appendix.tex into ``out``; ConfigError with LaTeX's error lines where it fails."""
    check(shutil.which("latexmk") is not None, "latexmk", None,
          "LaTeX is not installed: run `make paper` (it installs Debian's texlive via paper/install.sh, as root)")
    env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", PDF_DATE), "FORCE_SOURCE_DATE": "1"}
    done = subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", f"-outdir={out}",
                           "appendix.tex"], cwd=folder, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        errors = [line for line in done.stdout.splitlines() if line.startswith(("!", "l."))]
        raise ConfigError("appendix.tex", str(folder / "appendix.tex"), "LaTeX failed: "
                          + (" ".join(errors[:6]) or done.stdout[-800:]) + f" (log: {out / 'appendix.log'})")


def composed_id(pin: Pin) -> str:
    """The id of the run (or sweep directory) ``pin``'s experiment, ``quick`` and overrides compose to now, the
    ids of the stage runs it consumes included (:mod:`ra3lab.stages`)."""
    from ra3lab.config import compose_experiment
    from ra3lab.execute import prepare
    from ra3lab.sweep.grid import plan

    if pin.kind == "sweep":
        return plan(pin.experiment, pin.overrides, pin.quick).sweep_dir.name
    return prepare(pin.experiment, compose_experiment(pin.experiment, pin.overrides, quick=pin.quick)).path.name


def pin(paper: Paper) -> dict:
    """Point every pin at the run (or sweep directory) its experiment, ``quick`` and overrides compose to (with
    the ids of the stage runs it consumes, :mod:`ra3lab.stages`), which must be finished; record the runs'
    commits and what uses each, then write the record (numbers.tex, figures.json) of the pinned results into
    paper/."""
    pins = paper.pins()
    figures, numbers = paper.content(pins)
    used: dict[str, list[str]] = {name: [] for name in pins}
    for figure in figures:
        for name in figure.pins():
            used[name].append(f"figure {figure.name}")
    for number in numbers:
        for name in DERIVED.get(number.source, ((number.source,), None))[0]:
            if name in used and f"numbers ({number.source})" not in used[name]:
                used[name].append(f"numbers ({number.source})")
    for name, found in pins.items():
        identity = composed_id(found)
        commit = _provenance(paper.runs / found.experiment / identity).get("commit") if found.kind == "run" else None
        pins[name] = replace(found, id=identity, commit=commit, used_by=tuple(used[name]))
        marker = "manifest.jsonl" if found.kind == "sweep" else "summary.json"
        if not (pins[name].path(paper.runs) / marker).is_file():
            raise missing(pins[name], paper.runs)
    save_pins(pins, paper.folder / "runs.yaml")
    data = render(paper, paper.out)
    shutil.copyfile(paper.out / "numbers.tex", paper.folder / "numbers.tex")
    (paper.folder / "figures.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    say("paper", f"pinned {len(pins)} runs in {paper.folder / 'runs.yaml'}; record: numbers.tex, figures.json")
    return {"pins": {name: f"{found.experiment}/{found.id}" for name, found in pins.items()}}


def check_paper(paper: Paper) -> dict:
    """Render from the pinned runs into a temporary folder and compare with the committed record: numbers.tex
    line by line, each figure's data exactly. ConfigError listing the drift."""
    with tempfile.TemporaryDirectory() as tmp:
        data = render(paper, Path(tmp))
        numbers = (Path(tmp) / "numbers.tex").read_text().splitlines()
    committed = (paper.folder / "numbers.tex").read_text().splitlines() if (paper.folder / "numbers.tex").is_file() \
        else []
    recorded = json.loads((paper.folder / "figures.json").read_text()) if (paper.folder / "figures.json").is_file() \
        else {}
    drift = [f"numbers.tex: {line!r} (committed: absent or different)" for line in numbers if line not in committed]
    drift += [f"numbers.tex: {line!r} is no longer produced" for line in committed if line not in numbers]
    drift += [f"figure {name}: its data differ from figures.json" for name in data
              if json.dumps(data[name], sort_keys=True) != json.dumps(recorded.get(name), sort_keys=True)]
    drift += [f"figure {name}: in figures.json but no longer drawn" for name in recorded if name not in data]
    check(not drift, "paper", str(paper.folder), "the pinned runs no longer give the committed appendix: "
          + "; ".join(drift[:8]) + (f" (and {len(drift) - 8} more)" if len(drift) > 8 else "")
          + ". Recreate the runs the pins name, or re-pin with `ra3lab paper pin` and commit the record")
    count = len(paper.content(paper.pins())[1])
    say("paper", f"check passed: {count} numbers, the pins and {len(data)} figures match the committed record")
    return {"numbers": count, "figures": len(data), "drift": []}


def _provenance(folder: Path) -> dict:
    path = folder / "provenance.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def tex(text: object) -> str:
    """``text`` with LaTeX's special characters escaped, for \\texttt."""
    table = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "$": r"\$", "#": r"\#", "&": r"\&", "{": r"\{",
             "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(table.get(char, char) for char in str(text))


def pin_macros(pins: dict[str, Pin]) -> str:
    """``\\pinrun{<pin>}``: the run a pin names (``experiment/id``), for the captions."""
    lines = [r"\makeatletter", r"\newcommand{\pinrun}[1]{\texttt{\@nameuse{pinrun@#1}}}"]
    lines += [rf"\@namedef{{pinrun@{name}}}{{{tex(found.experiment)}/{tex(found.id)}}}" for name, found in pins.items()]
    return "\n".join([*lines, r"\makeatother"]) + "\n"


def provenance_table(pins: dict[str, Pin], runs: Path) -> str:
    """A longtable row per pin: its name, run (experiment/id: the id is the hash of the resolved config), the
    commit it ran at and the command that recreates it; then what reads it."""
    columns = r"@{}p{0.1\textwidth}p{0.28\textwidth}p{0.1\textwidth}p{0.42\textwidth}@{}"
    rows = [rf"{{\footnotesize\begin{{longtable}}{{{columns}}}",
            r"\toprule pin & run (config hash) & commit & command \\ \midrule \endhead"]
    for name, found in pins.items():
        provenance = _provenance(found.path(runs))
        commit = (found.commit or provenance.get("commit") or "--")[:10]
        dirty = r"\textsuperscript{*}" if provenance.get("dirty") else ""
        where = f"sweeps/{found.experiment}/{found.id}" if found.kind == "sweep" else f"{found.experiment}/{found.id}"
        where = tex(where).replace("/", r"/\allowbreak{}")        # a path breaks after its slashes
        rows.append(rf"\texttt{{{tex(name)}}} & \texttt{{{where}}} & \texttt{{{tex(commit)}}}{dirty} & "
                    rf"\texttt{{{tex(found.command())}}} \\")
        if found.used_by:
            used = tex(", ".join(found.used_by))
            rows.append(rf"\multicolumn{{4}}{{@{{}}l}}{{\quad\footnotesize used by: {used}}} \\")
    rows += [r"\bottomrule", r"\end{longtable}}"]
    return "\n".join(rows) + "\n"


def _value(config, key: str) -> str:
    value = OmegaConf.select(config, key)
    return json.dumps(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)


def config_tables(pins: dict[str, Pin], runs: Path) -> str:
    """A longtable per pinned run of its resolved config (every leaf, dotted key = value; the quick profile's list
    of overrides left out: its values are already in the keys)."""
    parts = []
    for name, found in pins.items():
        path = found.path(runs) / "config.yaml"
        if found.kind != "run" or not path.is_file():
            continue
        config = OmegaConf.load(path)
        assert isinstance(config, DictConfig), "a run's config is a mapping"
        keys = [key for key in flat_keys(config) if not key.startswith("quick.")]
        parts += [rf"\subsection*{{\texttt{{{tex(name)}}}: \texttt{{{tex(found.experiment)}/{tex(found.id)}}}}}",
                  r"{\scriptsize\begin{longtable}{@{}p{0.38\textwidth}p{0.58\textwidth}@{}}",
                  r"\toprule key & value \\ \midrule \endhead"]
        parts += [rf"\texttt{{{tex(key)}}} & \texttt{{{tex(_value(config, key))}}} \\" for key in keys]
        parts += [r"\bottomrule", r"\end{longtable}}"]
    return "\n".join(parts) + "\n"
