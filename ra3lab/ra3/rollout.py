"""Latent thoughts sampled line by line with the code teacher-forced: the E-step's rollouts and the infusion.

Each row (one rollout of one snippet) reads its snippet's lines in order. Before every *decision line*
the model q decides from the prefix alone (prior-style, k = 0): it thinks with the probability its
next-token distribution, after the line's indent, puts on comment tokens (``codec.comment_mask``).
A thinking row samples a comment line of at most ``max_thought_tokens`` tokens; the code line follows
either way. All rows share one KV cache, in which what a snippet's rollouts have in common (the
lines before its first decision) is computed once; chunks are right-padded with their pads masked out, and
the sampled tokens of a thought are masked out and replaced by the thought line's own encoding, so
the cache of a row always holds ``codec.encode_lines(rollout.lines)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from ra3lab.lm import LineCodec
from ra3lab.lm.scoring import cache_keyword


@dataclass(frozen=True)
class Rollout:
    """One snippet with the thoughts of one rollout."""

    snippet: tuple[str, ...]       # the code lines
    thoughts: dict[int, str]       # snippet line index -> the thought line written before it
    think_probs: dict[int, float]  # decision line index -> q's probability of thinking there

    @property
    def lines(self) -> list[str]:
        """The snippet with its thought lines inserted."""
        out = []
        for index, line in enumerate(self.snippet):
            if index in self.thoughts:
                out.append(self.thoughts[index])
            out.append(line)
        return out


class _SharedCache:
    """Rows fed chunk by chunk through one KV cache; ``last`` holds each row's next-token logits (R, V)."""

    def __init__(self, model, rows: int, pad_id: int):
        self.model, self.pad_id = model, pad_id
        self.decoder, self.head = model.get_decoder(), model.get_output_embeddings()
        self.cache = DynamicCache(config=model.config)
        self.cache_keyword = cache_keyword(self.decoder)
        self.mask = torch.zeros(rows, 0, dtype=torch.long)
        self.count = torch.zeros(rows, dtype=torch.long)       # real (unmasked) tokens per row
        self.last = torch.zeros(rows, model.config.vocab_size)

    def feed(self, chunks: list[list[int]]) -> None:
        """Append ``chunks[r]`` (possibly empty) to row r."""
        width = max(map(len, chunks))
        if width == 0:
            return
        lengths = torch.tensor([len(chunk) for chunk in chunks])
        ids = torch.tensor([chunk + [self.pad_id] * (width - len(chunk)) for chunk in chunks])
        new = (torch.arange(width) < lengths[:, None]).long()
        positions = self.count[:, None] + (new.cumsum(1) - 1).clamp(min=0)
        self.mask = torch.cat([self.mask, new], dim=1)
        hidden = self.decoder(input_ids=ids, attention_mask=self.mask, position_ids=positions,
                              use_cache=True,
                              **{self.cache_keyword: self.cache}).last_hidden_state
        fed = lengths > 0
        rows = fed.nonzero().squeeze(1)
        self.last[rows] = self.head(hidden[rows, lengths[rows] - 1]).float()
        self.count += lengths

    def repeat(self, times: int) -> None:
        """Make each row ``times`` consecutive rows that share what it holds (a prefix computed once)."""
        self.cache.batch_repeat_interleave(times)
        self.mask, self.count, self.last = (tensor.repeat_interleave(times, dim=0)
                                            for tensor in (self.mask, self.count, self.last))

    def forget(self, rows: torch.Tensor, columns: int, tokens: torch.Tensor) -> None:
        """Mask out the last ``columns`` cache columns of ``rows``, which held ``tokens[rows]`` real tokens."""
        self.mask[rows, self.mask.shape[1] - columns:] = 0
        self.count[rows] -= tokens[rows]


@torch.no_grad()
def sample_thoughts(model, codec: LineCodec, snippets: list[list[str]], decisions: list[list[bool]], repeats: int = 1,
                    max_thought_tokens: int = 8, temperature: float = 1.0, seed: int = 0) -> list[list[Rollout]]:
    """``repeats`` rollouts of each snippet: ``result[i][g]`` is rollout g of snippet i.

    decisions[i][t]: whether a thought may be written before line t of snippet i (False for context
    lines such as a function header). Deterministic per ``seed``.
    """
    generator = torch.Generator().manual_seed(seed)
    rows = [i for i in range(len(snippets)) for _ in range(repeats)]
    thoughts: list[dict[int, str]] = [{} for _ in rows]
    think_probs: list[dict[int, float]] = [{} for _ in rows]
    model_was_training = model.training
    model.eval()
    # what the rollouts of a snippet share (bos, the lines before its first decision line, that line's
    # indent) is fed once per snippet, then the cache is repeated to its rollouts
    first = [next((t for t, may in enumerate(d) if may), len(s)) for s, d in zip(snippets, decisions)]
    cache = _SharedCache(model, len(snippets), codec.pad_id)
    cache.feed([[codec.bos_id, *(i for line in s[:f] for i in codec.encode_line(line)),
                 *(codec.indent_ids(s[f]) if f < len(s) else [])] for s, f in zip(snippets, first)])
    cache.repeat(repeats)
    pending: list[list[int]] = [[] for _ in rows]
    comment = codec.comment_mask[: cache.last.shape[1]]
    newline = codec.newline_mask[: cache.last.shape[1]]
    for t in range(max(map(len, snippets))):
        deciding = torch.zeros(len(rows), dtype=torch.bool)
        for r, i in enumerate(rows):
            if first[i] <= t < len(snippets[i]):
                line = snippets[i][t]
                if decisions[i][t]:
                    pending[r] += codec.indent_ids(line) if t > first[i] else []
                    deciding[r] = True
                else:
                    pending[r] += codec.encode_line(line)
        if not deciding.any():
            continue
        cache.feed(pending)
        pending = [[] for _ in rows]
        p_think = ((cache.last / temperature).softmax(-1) * comment).sum(-1)
        think = deciding & (torch.rand(len(rows), generator=generator) < p_think)
        if think.any():
            for r, text in _sample_comment_lines(cache, think, comment, newline, codec, max_thought_tokens,
                                                 temperature, generator).items():
                line = snippets[rows[r]][t]
                thought = codec.split(line)[0] + _printable(codec, text, max_thought_tokens)
                thoughts[r][t] = thought
                pending[r] += codec.content_ids(thought) + codec.indent_ids(line)
        for r in deciding.nonzero().squeeze(1).tolist():
            pending[r] += codec.content_ids(snippets[rows[r]][t])
            think_probs[r][t] = float(p_think[r])
    model.train(model_was_training)
    rollouts = [Rollout(tuple(snippets[i]), thoughts[r], think_probs[r]) for r, i in enumerate(rows)]
    return [rollouts[i * repeats:(i + 1) * repeats] for i in range(len(snippets))]


def _printable(codec: LineCodec, text: str, max_tokens: int) -> str:
    """``text`` without characters that are not printable (bytes cut mid-character decode to U+FFFD),
    shortened until its encoding holds at most ``max_tokens`` tokens before the newline."""
    while True:
        text = "".join(ch for ch in text if ch.isprintable() and ch != "\ufffd").rstrip() or "#"
        ids = codec.content_ids(text)[:-1]
        if len(ids) <= max_tokens:
            return text
        text = codec.decode(ids[:max_tokens])


def _sample_comment_lines(cache: _SharedCache, think: torch.Tensor, comment: torch.Tensor, newline: torch.Tensor,
                          codec: LineCodec, max_tokens: int, temperature: float, generator) -> dict[int, str]:
    """Sample one comment line per thinking row from the cache's current logits; returns row -> ``# text``.

    The first token is drawn among comment tokens, the next ones freely until a token holding a newline
    or ``max_tokens`` tokens. The sampled tokens are then masked out of the cache (the caller feeds the
    line's own encoding)."""
    active = think.clone()
    sampled: list[list[int]] = [[] for _ in range(len(think))]
    fed_columns = 0
    for step in range(max_tokens):
        probs = (cache.last / temperature).softmax(-1)
        if step == 0:
            probs = probs * comment
        tokens = torch.multinomial(probs + (~active)[:, None], 1, generator=generator).squeeze(1)  # inactive: any
        for r in active.nonzero().squeeze(1).tolist():
            sampled[r].append(int(tokens[r]))
        active &= ~newline[tokens]
        if step + 1 == max_tokens or not active.any():
            break
        cache.feed([[int(tokens[r])] if active[r] else [] for r in range(len(think))])
        fed_columns += 1
    cache.forget(think.nonzero().squeeze(1), fed_columns,
                 torch.tensor([max(len(tokens) - 1, 0) for tokens in sampled]))
    return {r: codec.decode(sampled[r]).split("\n")[0].rstrip() for r in think.nonzero().squeeze(1).tolist()}
