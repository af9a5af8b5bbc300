"""`ra3lab bench estep`: scoring the E-step's G rollouts of a snippet with the prefix's KV cache
reused (``score_continuations``) against one full forward per rollout (``score_continuations_naive``).

Both score the same rollouts with the same tiny Llama in this process. A snippet is
``prefix_lines`` consecutive lines of Python standard-library code; rollout g continues it with
a synthetic thought line (``# ...`` at the next line's indent; rollout 0 has none, the `act`
latent) and the next ``continuation_lines`` code lines. The byte-level BPE is trained on the
first ``files`` standard-library modules (cached in the temp folder).

Units: times in seconds (wall clock, ``time.perf_counter``); throughput in tokens scored per
second, counting the P + C tokens each rollout is scored over (the same count for both);
log-likelihoods in nats; ``speedup`` = naive seconds / reuse seconds.
"""

from __future__ import annotations

import os
import random
import re
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

from ra3lab.errors import check
from ra3lab.lm import LineCodec, build_model, score_continuations, score_continuations_naive, train_tokenizer

VOCAB_SIZE = 1024
HEADS = 4
TARGET_SPEEDUP = 3
LOGLIK_TOLERANCE = 1e-4     # the largest |reuse - naive| log-likelihood (nats) the benchmark accepts
THOUGHT_WORDS = ("compute", "check", "keep", "the", "each", "value", "update", "result", "loop", "over", "if",
                 "needed", "build", "parse", "name", "return", "skip", "empty", "first", "last")
CACHE = Path(tempfile.gettempdir()) / "ra3lab-cache" / "tokenizers"


def stdlib_files(n: int) -> list[Path]:
    """The first ``n`` standard-library modules in path order, tests and site-packages left out."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
    return sorted(p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts))[:n]


def _validate(G, snippets, prefix_lines, continuation_lines, hidden, layers, files, repeats, seed) -> None:
    for field, value, least in (("G", G, 2), ("snippets", snippets, 1), ("prefix_lines", prefix_lines, 1),
                                ("continuation_lines", continuation_lines, 1), ("hidden", hidden, 2 * HEADS),
                                ("layers", layers, 1), ("files", files, 1), ("repeats", repeats, 1),
                                ("seed", seed, 0)):
        check(isinstance(value, int) and not isinstance(value, bool) and value >= least, field, value,
              f"must be an integer >= {least}")
    check(hidden % (2 * HEADS) == 0, "hidden", hidden, f"must be a multiple of {2 * HEADS} ({HEADS} heads)")


def _snippets(sources: list[list[str]], n: int, prefix_lines: int, continuation_lines: int, rng: random.Random
              ) -> list[tuple[list[str], list[str]]]:
    """n (prefix, continuation) line windows whose continuation opens on a code line (not blank, not a comment)."""
    starts = [(f, i) for f, lines in enumerate(sources)
              for i in range(prefix_lines, len(lines) - continuation_lines + 1)
              if lines[i].strip() and not lines[i].lstrip().startswith("#")]
    check(len(starts) > 0, "prefix_lines", prefix_lines, "too long for the files read: lower it or raise files")
    picks = [starts[rng.randrange(len(starts))] for _ in range(n)]
    return [(sources[f][i - prefix_lines:i], sources[f][i:i + continuation_lines]) for f, i in picks]


def _thoughts(G: int, indent: str, words: list[str], rng: random.Random) -> list[list[str]]:
    """G distinct thought lists: [] (no thought) first, then one ``# ...`` line of 1..8 words each."""
    thoughts, seen = [[]], set()
    while len(thoughts) < G:
        line = indent + "# " + " ".join(rng.choices(words, k=rng.randint(1, 8)))
        if line not in seen:
            seen.add(line)
            thoughts.append([line])
    return thoughts


def run(G: int = 8, snippets: int = 16, prefix_lines: int = 24, continuation_lines: int = 3, hidden: int = 128,
        layers: int = 4, files: int = 200, repeats: int = 3, seed: int = 0, progress: bool = True) -> dict:
    """Time both scorers on the same rollouts and compare their log-likelihoods; returns a flat JSON-able dict.

    G: rollouts per snippet; snippets: how many snippets; prefix_lines, continuation_lines: lines of
    code before and after the thought; hidden, layers: the model's width and depth (4 heads);
    files: standard-library modules read; repeats: passes over the snippets, each snippet's fastest counted.
    """
    from rich.console import Console
    from rich.progress import track

    _validate(G, snippets, prefix_lines, continuation_lines, hidden, layers, files, repeats, seed)
    sources = [p.read_text(encoding="utf-8", errors="replace").split("\n") for p in stdlib_files(files)]
    tokenizer = train_tokenizer((line for lines in sources for line in lines), VOCAB_SIZE, CACHE)
    codec = LineCodec(tokenizer)
    rng = random.Random(seed)
    work = []
    for prefix, code in _snippets(sources, snippets, prefix_lines, continuation_lines, rng):
        words = list(THOUGHT_WORDS) + re.findall(r"[A-Za-z_]{3,}", " ".join(code))
        indent = codec.split(code[0])[0]
        work.append((codec.encode_lines(prefix)[0],
                     [codec.encode_lines(thought + code, bos=False)[0] for thought in _thoughts(G, indent, words, rng)]))
    longest = max(len(prefix) + len(c) for prefix, rollouts in work for c in rollouts)
    model = build_model(tokenizer, hidden=hidden, layers=layers, heads=HEADS, max_positions=max(1024, longest),
                        seed=seed).eval()

    score_continuations(model, *work[0])                # warm-up: first-call allocations are not timed
    score_continuations_naive(model, *work[0])
    reuse, naive = torch.zeros(2, repeats, len(work), dtype=torch.float64)     # seconds per (pass, snippet)
    max_diff = 0.0
    bar = track(range(repeats), description="estep scoring", console=Console(stderr=True), disable=not progress,
                transient=True)
    for r in bar:
        for k, (prefix, rollouts) in enumerate(work):   # the two scorers alternate, so load changes hit both
            begin = time.perf_counter()
            ours = score_continuations(model, prefix, rollouts)
            middle = time.perf_counter()
            theirs = score_continuations_naive(model, prefix, rollouts)
            reuse[r, k], naive[r, k] = middle - begin, time.perf_counter() - middle
            max_diff = max(max_diff, float((ours - theirs).abs().max()))
    reuse, naive = float(reuse.min(0).values.sum()), float(naive.min(0).values.sum())   # fastest pass per snippet
    tokens = sum(len(prefix) + len(c) for prefix, rollouts in work for c in rollouts)

    speedup = naive / reuse
    return {
        "G": G, "snippets": snippets, "prefix_lines": prefix_lines, "continuation_lines": continuation_lines,
        "hidden": hidden, "layers": layers, "heads": HEADS, "files": files, "repeats": repeats,
        "seed": seed,
        "vocab_size": len(tokenizer), "params": sum(p.numel() for p in model.parameters()),
        "prefix_tokens_mean": sum(len(prefix) for prefix, _ in work) / len(work),
        "continuation_tokens_mean": sum(len(c) for _, rollouts in work for c in rollouts) / (len(work) * G),
        "tokens_scored": tokens,
        "reuse_s": reuse, "naive_s": naive,
        "reuse_tokens_per_s": tokens / reuse, "naive_tokens_per_s": tokens / naive,
        "speedup": speedup,
        "max_abs_loglik_diff": max_diff,
        "logliks_agree": max_diff <= LOGLIK_TOLERANCE,
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": bool(speedup >= TARGET_SPEEDUP and max_diff <= LOGLIK_TOLERANCE),
        "notes": ("reuse = one forward over the prefix, its KV cache repeated to G rows, one batched forward over "
                  "the right-padded continuations; naive = one forward of prefix + continuation per rollout, "
                  "logits kept only where the continuation is predicted. Both count P + C tokens per rollout. "
                  "Times sum, over snippets, the fastest of the repeats; tokenizer training, encoding and model "
                  "building are not timed, nor one warm-up call of each scorer."),
    }
