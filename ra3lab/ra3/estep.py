"""The E-step: self-supervised RL of the latent policy q over where and what to think, pi held fixed.

q starts as a copy of pi. Each step draws ``snippets_per_step`` snippets, rolls out G thought
patterns of each with q (code teacher-forced), scores the code under the frozen pi, and takes one
policy-gradient step on q: loss = -mean(A * sum_t log q(z_t | s_t)), with the gradient on the
latent choices only (thought tokens and the choice not to think), never on the code.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from ra3lab.lm import LineCodec
from ra3lab.ra3.likelihood import score_lines
from ra3lab.ra3.metrics import thought_stats
from ra3lab.ra3.reward import advantages, line_rewards, returns_of
from ra3lab.ra3.rollout import Rollout, sample_thoughts


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

    ema: object = None
    reference: object = None


def line_returns(pi, codec: LineCodec, rollouts: list[Rollout], decisions: list[list[bool]], c: float,
                 config: DictConfig, models: Models | None = None, group_size: int = 1) -> torch.Tensor:
    """Tensor[R, T] of the line rewards r_t of each rollout (estep.reward, :mod:`ra3lab.ra3.reward`);
    ``group_size``: consecutive rollouts of one snippet, whose common prefix pi scores once.

    config: estep.{reward, kl_coef, entropy_coef, temperature}; log q(z_t) is what the sampler recorded."""
    models = models or Models()
    kind = config.reward
    with torch.no_grad():
        scores = score_lines(pi, codec, rollouts, decisions, group_size=group_size)
        extra = {}
        if kind in ("quiet_star", "rlp"):
            scorer = pi if kind == "quiet_star" else models.ema
            plain = score_lines(scorer, codec, [Rollout(r.snippet) for r in rollouts], decisions).code
            extra["plain" if kind == "quiet_star" else "ema"] = plain
        if kind == "latro" or config.get("entropy_coef", 0):
            extra["latent"] = torch.tensor([[r.log_q.get(t, 0.0) for t in range(scores.code.shape[1])]
                                            for r in rollouts])
        if kind == "latro":
            extra["reference"] = score_lines(models.reference, codec, rollouts, decisions, config.temperature,
                                             view="q").latent
    return line_rewards(scores.code, scores.think, scores.decision, c, kind, kl_coef=config.get("kl_coef", 0.0),
                        entropy_coef=config.get("entropy_coef", 0.0), **extra)


def e_step(pi, codec: LineCodec, corpus: Corpus, config: DictConfig, c: float, seed: int,
           log: Callable[[int, dict], None] | None = None):
    """Train and return q (a copy of pi); ``log(step, metrics)`` after every step.

    config: estep.{steps, snippets_per_step, group_size, max_thought_tokens, temperature, lr, reward, baseline,
    normalize} and optionally {kl_coef, entropy_coef, ema_decay, returns, lookahead}. q's reference (latro) is pi; the EMA
    model (rlp) follows q with decay ``ema_decay``.
    """
    q = copy.deepcopy(pi)
    pi.eval()
    models = Models(ema=copy.deepcopy(pi) if config.reward == "rlp" else None, reference=pi)
    optimizer = torch.optim.AdamW(q.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(seed)
    G = config.group_size
    mode = config.get("returns", "total")
    for step in range(config.steps):
        batch = corpus.take(torch.randperm(len(corpus.snippets), generator=generator)[:config.snippets_per_step].tolist())
        groups = sample_thoughts(q, codec, batch.snippets, batch.decisions, repeats=G,
                                 max_thought_tokens=config.max_thought_tokens, temperature=config.temperature,
                                 seed=seed * 100_003 + step, lookahead=config.get("lookahead", 0))
        rollouts = [rollout for group in groups for rollout in group]
        decisions = [d for d in batch.decisions for _ in range(G)]
        rewards = line_returns(pi, codec, rollouts, decisions, c, config, models, group_size=G)  # (R, T)
        returns = returns_of(rewards, mode)                                                    # (R,) or (R, T)
        no_thought = None
        if config.baseline == "no_thought":
            plain = [Rollout(tuple(s)) for s in batch.snippets]
            no_thought = returns_of(line_returns(pi, codec, plain, batch.decisions, c, config, models), mode)
        advantage = advantages(returns.view(-1, G, *returns.shape[1:]), config.baseline, no_thought,
                               config.normalize).view(returns.shape)
        q.train()
        latent = score_lines(q, codec, rollouts, decisions, config.temperature, view="q",
                             group_size=G).latent                                            # (R, T), with grads
        weighted = advantage[:, None] * latent if mode == "total" else advantage * latent
        loss = -weighted.sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(q.parameters(), 1.0)
        optimizer.step()
        q.eval()
        if models.ema is not None:
            with torch.no_grad():
                for average, current in zip(models.ema.parameters(), q.parameters()):
                    average.lerp_(current, 1 - config.get("ema_decay", 0.9))
        n_lines = sum(map(sum, decisions))
        truth = None if batch.truth is None else [t for t in batch.truth for _ in range(G)]
        metrics = {"reward": float(rewards.sum()) / n_lines, "loss": loss.item(),
                   **thought_stats(rollouts, decisions, codec, truth)}
        if log is not None:
            log(step, metrics)
    return q
