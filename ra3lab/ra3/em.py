"""RA3's EM loop and its NTP twin, with one checkpoint per round so an interrupted run resumes.

Round k: E-step (train q from pi, :mod:`ra3lab.ra3.estep`; none when ``estep.steps`` is 0, the
``infuse0`` control, where q is pi itself), infuse the corpus with q's thoughts
(:mod:`ra3lab.ra3.infuse`), M-step (next-token prediction of pi on the infused corpus, all tokens
in the loss, so pi learns when and what to think). Round k's pi, tokenizer and metrics are saved in
:func:`~ra3lab.ra3.arms.round_folder` of the arm's folder; a rerun loads the last complete round and goes on
from there.

Every M-step starts a fresh optimizer and learning-rate schedule with the round's seed, and the NTP
twin restarts the same way at the same seeds on the plain corpus: RA3 and NTP differ only in the data
(a round that infuses no thought trains exactly as NTP's round does).

``track(step, {tag: value})``, where given, gets the training curves as they are produced: the M-step's (and
NTP's) ``mstep/loss`` every 10 steps and the E-step's every step under :func:`estep_tags`; steps count on across
rounds (round k's M-step steps are k * midtrain.steps_per_round + 1 ..., its E-step steps k * estep.steps + 0 ...).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from ra3lab.lm import LineCodec, load_model, train_ntp
from ra3lab.ra3.arms import round_folder
from ra3lab.ra3.estep import Corpus, EStepConfig, e_step
from ra3lab.ra3.infuse import infuse
from ra3lab.ra3.metrics import thought_stats
from ra3lab.runs import atomic_write
from ra3lab.runtime import from_main, place

Progress = Callable[[str], None]
Track = Callable[[int, dict], None]     # (step, {tag: value}) of the training curves, e.g. ra3lab.tracking.Scalars


def save_round(model, tokenizer, folder: Path, metrics: dict) -> None:
    """Write the model and tokenizer, then ``metrics.json`` last: its presence marks the round complete."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    atomic_write(folder / "metrics.json", json.dumps(metrics))


def last_round(folder: Path) -> tuple[int, list[dict]]:
    """(number of complete rounds, their metrics) under ``folder``."""
    rounds: list[dict] = []
    while (round_folder(folder, len(rounds)) / "metrics.json").exists():
        rounds.append(json.loads((round_folder(folder, len(rounds)) / "metrics.json").read_text()))
    return len(rounds), rounds


def round_seed(seed: int, k: int) -> int:
    """The seed of EM round k (E-step, infusion and M-step data order), shared with NTP's round k."""
    return seed * 1000 + k


def estep_tags(point: dict) -> dict:
    """One E-step step's metrics under their metrics.jsonl names: ``estep/reward`` and ``estep/loss``, the
    thought statistics under ``rationale/`` (rate, length, boundary_precision|recall|f1 where truth is known)."""
    return {f"{'estep' if key in ('reward', 'loss') else 'rationale'}/{key}": value for key, value in point.items()}


def mstep_log(track: Track | None, k: int, config: DictConfig) -> Callable[[int, float], None] | None:
    """:func:`train_on`'s ``log`` that hands round k's M-step losses to ``track`` as ``mstep/loss``; None without
    ``track``."""
    if track is None:
        return None
    return lambda step, loss: track(k * config.midtrain.steps_per_round + step, {"mstep/loss": loss})


def train_on(model, codec: LineCodec, programs: list[list[str]], steps: int, batch_size: int, lr: float, seed: int,
             log=None, eos: bool = False, runtime: DictConfig | None = None) -> list[float]:
    """Next-token prediction of ``model`` on programs (lists of lines), each cut to the model's context;
    the M-step, the NTP arm and pre-training. ``eos``: end every program with the eos token, so that a model
    trained on whole functions learns where one ends (and stops there when it generates); leave it off for
    snippets cut anywhere. ``runtime``: the run's devices and processes (:func:`~ra3lab.lm.train.train_ntp`).
    Returns the per-step losses."""
    context = model.config.max_position_embeddings
    sequences = [(codec.encode_lines(program)[0] + [codec.eos_id] * eos)[:context] for program in programs]
    return train_ntp(model, sequences, steps=steps, batch_size=batch_size, lr=lr, seed=seed, log=log,
                     runtime=runtime)


def ra3(base, tokenizer, codec: LineCodec, corpus: Corpus, config: DictConfig, estep: EStepConfig, c: float,
        folder: Path, seed: int, progress: Progress, track: Track | None = None) -> tuple[object, list[dict]]:
    """K = midtrain.rounds EM rounds from ``base`` (not modified), E-step and infusion as ``estep`` says, M-steps
    as ``config.midtrain`` says; returns (pi after the last round, per-round metrics). ``track``: see the module
    docstring."""
    done, rounds = last_round(folder)
    pi = copy.deepcopy(base) if done == 0 else place(load_model(round_folder(folder, done - 1)), config.get("runtime"),
                                                    training=True)
    for k in range(done, config.midtrain.rounds):
        curve: list[dict] = []

        def log(step, metrics, k=k, curve=curve):
            curve.append(metrics)
            progress(f"round {k + 1}/{config.midtrain.rounds} E-step {step + 1}/{estep.steps}: "
                     f"reward {metrics['reward']:.3f}/line, thought rate {metrics['rate']:.2f}")
            if track is not None:
                track(k * estep.steps + step, estep_tags(metrics))

        seed_k = round_seed(seed, k)
        if estep.method == "rl":
            q = e_step(pi, codec, corpus, estep, c, seed_k, log) if estep.steps > 0 else pi
            infused = infuse(q, codec, corpus, seed_k, estep)
        else:                       # BoLT-style: importance resampling from pi itself, no RL
            infused = infuse(pi, codec, corpus, seed_k, estep, pi=pi, c=c)
        infused = from_main(infused)        # in a launch of several processes, all train on rank 0's corpus
        stats = thought_stats(infused, corpus.decisions, codec, corpus.truth)
        progress(f"round {k + 1}: infused {len(infused)} snippets, thought rate {stats['rate']:.2f}; M-step")
        losses = m_step(pi, codec, [rollout.lines for rollout in infused], config, seed_k,
                        mstep_log(track, k, config))
        metrics = {"round": k, "estep": curve, "infused": stats, "mstep_loss": losses[-1],
                   "example": infused[0].lines, "placements": [sorted(rollout.thoughts) for rollout in infused]}
        save_round(pi, tokenizer, round_folder(folder, k), metrics)
        rounds.append(metrics)
    return pi, rounds


def m_step(pi, codec: LineCodec, programs: list[list[str]], config: DictConfig, seed: int,
           log: Callable[[int, float], None] | None = None) -> list[float]:
    """One round's next-token prediction of ``pi`` on ``programs`` (midtrain.steps_per_round steps; an eos after
    each program when midtrain.eos); ``log``: :func:`train_on`'s."""
    return train_on(pi, codec, programs, config.midtrain.steps_per_round, config.midtrain.batch_size,
                    config.midtrain.lr, seed, log=log, eos=config.midtrain.get("eos", False),
                    runtime=config.get("runtime"))


def ntp(base, tokenizer, codec: LineCodec, programs: list[list[str]], config: DictConfig, folder: Path,
        seed: int, track: Track | None = None) -> object:
    """Plain next-token prediction on the same corpus, in as many rounds as RA3 with the same M-steps and seeds;
    ``track``: see the module docstring."""
    if (folder / "metrics.json").exists():
        return place(load_model(folder), config.get("runtime"), training=True)
    pi = copy.deepcopy(base)
    losses = [m_step(pi, codec, programs, config, round_seed(seed, k), mstep_log(track, k, config))
              for k in range(config.midtrain.rounds)]
    save_round(pi, tokenizer, folder, {"loss": losses[-1][-1]})
    return pi
