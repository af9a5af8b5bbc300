"""The E-step: self-supervised RL of the latent policy q over where and what to think, pi held fixed.

q starts as a copy of pi. Each step draws ``snippets_per_step`` snippets, rolls out G thought
patterns of each with q (code teacher-forced), scores the code under the frozen pi, and takes one
policy-gradient step on q: loss = -mean(A * sum_t log q(z_t | s_t)), with the gradient on the
latent choices only (thought tokens and the choice not to think), never on the code.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

import torch

from ra3lab.errors import check, check_choice
from ra3lab.lm import LineCodec
from ra3lab.ra3.likelihood import score_lines
from ra3lab.ra3.metrics import thought_stats
from ra3lab.ra3.reward import BASELINES, KINDS, RETURNS, advantages, line_rewards, returns_of
from ra3lab.ra3.rollout import Rollout, sample_thoughts
from ra3lab.runtime import gathered, shard, summed, world

METHODS = ("rl", "resample")


def _integer(field: str, value, least: int) -> None:
    check(isinstance(value, int) and not isinstance(value, bool) and value >= least, f"estep.{field}", value,
          f"must be an integer >= {least}")


def _number(field: str, value, ok: bool, valid: str) -> None:
    check(isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and ok,
          f"estep.{field}", value, valid)


@dataclass(frozen=True)
class EStepConfig:
    """How q is trained and how it writes thoughts (a study's ``estep:`` block); a bad value raises ConfigError
    on construction, naming the field ``estep.<name>``."""

    method: str = "rl"              # rl (RA3's E-step) or resample (BoLT-style importance resampling, no RL)
    steps: int = 12                 # policy-gradient steps per EM round; 0: no E-step (q is pi)
    snippets_per_step: int = 6      # snippets drawn per step
    group_size: int = 8             # G rollouts per snippet (RL) or samples resampled from (resample), >= 2
    max_thought_tokens: int = 12    # L_z: tokens of a thought before its forced newline
    temperature: float = 1.0        # q's sampling temperature, > 0
    lr: float = 3e-4                # q's AdamW learning rate
    reward: str = "ra3"             # one of ra3lab.ra3.reward.KINDS
    kl_coef: float = 0.0            # latro: weight of the KL estimate to q's reference (pi), >= 0
    ema_decay: float = 0.9          # rlp: decay of the EMA of q that scores the no-thought baseline, in [0, 1)
    entropy_coef: float = 0.0       # weight of q's entropy term (RL only), >= 0
    returns: str = "total"          # total (sum over lines) or to_go (reward-to-go from each line)
    lookahead: int = 0              # k: code lines q sees past each decision line (0: prior-style q)
    baseline: str = "group"         # group, no_thought or none
    normalize: bool = True          # divide advantages by the group's standard deviation

    def __post_init__(self):
        check_choice("estep.method", self.method, METHODS)
        for field, least in (("steps", 0), ("snippets_per_step", 1), ("group_size", 2), ("max_thought_tokens", 1),
                             ("lookahead", 0)):
            _integer(field, getattr(self, field), least)
        _number("temperature", self.temperature, self.temperature > 0, "must be a number > 0")
        _number("lr", self.lr, self.lr > 0, "must be a number > 0")
        for field in ("kl_coef", "entropy_coef"):
            _number(field, getattr(self, field), getattr(self, field) >= 0, "must be a number >= 0")
        _number("ema_decay", self.ema_decay, 0 <= self.ema_decay < 1, "must lie in [0, 1)")
        check_choice("estep.reward", self.reward, KINDS)
        check_choice("estep.returns", self.returns, RETURNS)
        check_choice("estep.baseline", self.baseline, BASELINES)
        check(isinstance(self.normalize, bool), "estep.normalize", self.normalize, "must be true or false")
        check(self.entropy_coef == 0 or self.method == "rl", "estep.entropy_coef", self.entropy_coef,
              "shapes the RL E-step's reward: use it with estep.method=rl")

    @classmethod
    def of(cls, block: Mapping) -> EStepConfig:
        """The config of an ``estep:`` block (any mapping); ConfigError on an unknown key or a bad value."""
        known = [field.name for field in fields(cls)]
        for key in block:
            check(key in known, f"estep.{key}", block[key], f"not an E-step setting; known: {', '.join(known)}")
        return cls(**{key: block[key] for key in block})


@dataclass
class Corpus:
    """Snippets with their decision lines and, on CodeWorld, the true boundary lines."""

    snippets: list[list[str]]
    decisions: list[list[bool]]
    truth: list[set[int]] | None = None

    def take(self, indices: list[int]) -> Corpus:
        return Corpus([self.snippets[i] for i in indices], [self.decisions[i] for i in indices],
                      None if self.truth is None else [self.truth[i] for i in indices])


@dataclass
class Models:
    """What a reward scores with besides the frozen pi: the EMA model (rlp) and q's reference (latro)."""

    ema: torch.nn.Module | None = None
    reference: torch.nn.Module | None = None


def line_returns(pi, codec: LineCodec, rollouts: list[Rollout], decisions: list[list[bool]], c: float,
                 config: EStepConfig, models: Models | None = None, group_size: int = 1) -> torch.Tensor:
    """Tensor[R, T] of the line rewards r_t of each rollout (``config.reward``, :mod:`ra3lab.ra3.reward`, with
    its kl_coef, entropy_coef and temperature); ``group_size``: consecutive rollouts of one snippet, whose common
    prefix pi scores once. log q(z_t) is what the sampler recorded."""
    models = models or Models()
    kind = config.reward
    with torch.no_grad():
        scores = score_lines(pi, codec, rollouts, decisions, group_size=group_size)
        extra = {}
        if kind in ("quiet_star", "rlp"):
            scorer = pi if kind == "quiet_star" else models.ema
            plain = score_lines(scorer, codec, [Rollout(r.snippet) for r in rollouts], decisions).code
            extra["plain" if kind == "quiet_star" else "ema"] = plain
        if kind == "latro" or config.entropy_coef:
            extra["latent"] = torch.tensor([[r.log_q.get(t, 0.0) for t in range(scores.code.shape[1])]
                                            for r in rollouts])
        if kind == "latro":
            extra["reference"] = score_lines(models.reference, codec, rollouts, decisions, config.temperature,
                                             view="q").latent
    return line_rewards(scores.code, scores.think, scores.decision, c, kind, kl_coef=config.kl_coef,
                        entropy_coef=config.entropy_coef, **extra)


def policy_gradient(q, pi, codec: LineCodec, batch: Corpus, places: list[int], config: EStepConfig, c: float,
                    seed: int, models: Models, rollouts_in_step: int) -> tuple[list[Rollout], list[list[bool]],
                                                                           torch.Tensor, torch.Tensor]:
    """q's gradient (accumulated into its ``.grad``) from G rollouts of each snippet of ``batch`` (at ``places`` in
    the step's batch), its loss scaled to a mean over the step's ``rollouts_in_step``; returns (rollouts, their
    decision lines, line rewards (R, T), the loss)."""
    G, mode = config.group_size, config.returns
    groups = sample_thoughts(q, codec, batch.snippets, batch.decisions, repeats=G,
                             max_thought_tokens=config.max_thought_tokens, temperature=config.temperature,
                             seed=seed, lookahead=config.lookahead, places=places)
    rollouts = [rollout for group in groups for rollout in group]
    decisions = [d for d in batch.decisions for _ in range(G)]
    rewards = line_returns(pi, codec, rollouts, decisions, c, config, models, group_size=G)      # (R, T)
    returns = returns_of(rewards, mode)                                                        # (R,) or (R, T)
    no_thought = None
    if config.baseline == "no_thought":
        plain = [Rollout(tuple(s)) for s in batch.snippets]
        no_thought = returns_of(line_returns(pi, codec, plain, batch.decisions, c, config, models), mode)
    advantage = advantages(returns.view(-1, G, *returns.shape[1:]), config.baseline, no_thought,
                           config.normalize).view(returns.shape)
    q.train()
    latent = score_lines(q, codec, rollouts, decisions, config.temperature, view="q",
                         group_size=G).latent                                                # (R, T), with grads
    weighted = advantage[:, None] * latent if mode == "total" else advantage * latent
    loss = -weighted.sum(1).sum() / rollouts_in_step
    loss.backward()
    q.eval()
    return rollouts, decisions, rewards, loss.detach()


def sum_gradients(model) -> None:
    """Each parameter's gradient summed over the launch's processes (one without rollouts this step adds zeros);
    nothing in a process alone."""
    if world()[1] > 1:
        for parameter in model.parameters():
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
        summed([parameter.grad for parameter in model.parameters()])


def e_step(pi, codec: LineCodec, corpus: Corpus, config: EStepConfig, c: float, seed: int,
           log: Callable[[int, dict], None] | None = None):
    """Train and return q (a copy of pi) for ``config.steps`` steps; ``log(step, metrics)`` after every step.

    q's reference (latro) is pi; the EMA model (rlp) follows q with decay ``config.ema_decay``. In a launch of
    several processes (:mod:`ra3lab.runtime`) each process rolls out and scores its share of every step's snippets
    (:func:`~ra3lab.runtime.shard`; a snippet's G rollouts, and so its advantages, stay in one process; a process
    left without a snippet adds nothing), and q's gradient is summed over the processes before the step: q follows
    one process's with the same seed, and the metrics are the whole step's.
    """
    q = copy.deepcopy(pi)
    pi.eval()
    models = Models(ema=copy.deepcopy(pi) if config.reward == "rlp" else None, reference=pi)
    optimizer = torch.optim.AdamW(q.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(seed)
    for step in range(config.steps):
        chosen = torch.randperm(len(corpus.snippets), generator=generator)[:config.snippets_per_step].tolist()
        places = shard(range(len(chosen)))                                    # this process's share of the step
        batch = corpus.take([chosen[place] for place in places])
        optimizer.zero_grad(set_to_none=True)
        rollouts, decisions, rewards, loss = (
            policy_gradient(q, pi, codec, batch, places, config, c, seed * 100_003 + step, models,
                            len(chosen) * config.group_size)
            if places else ([], [], torch.zeros(0), torch.zeros(())))
        sum_gradients(q)
        torch.nn.utils.clip_grad_norm_(q.parameters(), 1.0)
        optimizer.step()
        if models.ema is not None:
            with torch.no_grad():
                for average, current in zip(models.ema.parameters(), q.parameters()):
                    average.lerp_(current, 1 - config.ema_decay)
        totals = torch.tensor([float(rewards.sum()), float(sum(map(sum, decisions))), float(loss)],
                              dtype=torch.float64)
        summed([totals])                                                      # reward, decision lines, loss
        truth = None if batch.truth is None else gathered([t for t in batch.truth for _ in range(config.group_size)])
        metrics = {"reward": float(totals[0] / totals[1]), "loss": float(totals[2]),
                   **thought_stats(gathered(rollouts), gathered(decisions), codec, truth)}
        if log is not None:
            log(step, metrics)
    return q
