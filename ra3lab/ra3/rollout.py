"""Latent thoughts sampled line by line with the code teacher-forced: the E-step's rollouts and the infusion.

Each row (one rollout of one snippet) reads its snippet's lines in order. Before every *decision line*
t the model q decides from the prefix alone (prior-style, ``lookahead`` k = 0), or from the prefix
followed by the next k code lines t..t+k-1 (posterior-style, hindsight): it thinks with the probability
its next-token distribution, after line t's indent, puts on comment tokens (``codec.comment_mask``).
q's view of a rollout is then the code with, before each decision line's indent, its k lookahead lines
(``rollout_ids(..., view="q")``); pi never sees them.
A thinking row samples a comment line of at most ``max_thought_tokens`` tokens before its newline; a
thought that reaches the cap is closed by a forced newline (probability 1 under q). The code line
follows either way. Each rollout keeps the exact token ids q sampled and log q(z_t | s_t) of every
choice (a thought: its tokens' tempered log-probabilities, the first one's including the choice to
think; no thought: log(1 - comment mass)), so a bound scores exactly what q drew. All rows share one KV
cache, in which what a snippet's rollouts have in common (the lines before its first decision) is
computed once; chunks are right-padded with their pads masked out. A thought is sampled on a copy of the
thinking rows' cache only, and then fed to the shared cache as the whole thought line, so the cache of a
row always holds ``rollout_ids(codec, rollout)`` and the rows that do not think cost nothing meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from ra3lab.errors import check, check_choice
from ra3lab.lm import LineCodec
from ra3lab.lm.scoring import cache_keyword


@dataclass(frozen=True)
class Rollout:
    """One snippet with the thoughts of one rollout. A thought given only as text (``thoughts``) is encoded by
    the line convention; a sampled one also keeps q's exact ``thought_ids``."""

    snippet: tuple[str, ...]                                   # the code lines
    thoughts: dict[int, str] = field(default_factory=dict)     # line index -> the thought line written before it
    think_probs: dict[int, float] = field(default_factory=dict)    # decision line -> q's probability of thinking
    thought_ids: dict[int, tuple[int, ...]] = field(default_factory=dict)  # line -> the content ids q sampled
    log_q: dict[int, float] = field(default_factory=dict)      # decision line -> log q(z_t | s_t) of q's choice
    lookahead: int = 0                                          # code lines q saw past each decision line

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

    def subset(self, rows: torch.Tensor) -> _SharedCache:
        """A copy holding only ``rows`` (indices): what is fed to it leaves this cache as it is."""
        copy = _SharedCache(self.model, len(rows), self.pad_id)
        for index, layer in enumerate(self.cache.layers):
            # attention layers, fed at least the bos: their keys and values are tensors
            assert isinstance(layer, DynamicLayer) and layer.keys is not None and layer.values is not None
            copy.cache.update(layer.keys[rows], layer.values[rows], index)
        copy.mask, copy.count, copy.last = self.mask[rows], self.count[rows], self.last[rows]
        return copy

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


@torch.no_grad()
def sample_thoughts(model, codec: LineCodec, snippets: list[list[str]], decisions: list[list[bool]], repeats: int = 1,
                    max_thought_tokens: int = 8, temperature: float = 1.0, seed: int = 0,
                    lookahead: int = 0, places: Sequence[int] | None = None) -> list[list[Rollout]]:
    """``repeats`` rollouts of each snippet: ``result[i][g]`` is rollout g of snippet i.

    decisions[i][t]: whether a thought may be written before line t of snippet i (False for context
    lines such as a function header); lookahead: the code lines q sees past each decision line (k).
    Deterministic per ``seed``: rollout g of snippet i draws its own random numbers, seeded by (``seed``,
    ``places[i]``, g) (``places``: the snippets' places in a larger batch, default 0, 1, ...), so a rollout is the
    same whatever other snippets share the call: in one process, or with the batch split over several.
    """
    check(isinstance(lookahead, int) and lookahead >= 0, "estep.lookahead", lookahead,
          "must be an integer >= 0 (0: prior-style q, k > 0: q sees the next k lines)")
    places = range(len(snippets)) if places is None else places
    check(len(places) == len(snippets), "places", len(places), "give one place per snippet")
    generators = [torch.Generator().manual_seed((seed * 1_000_003 + place) * 1_009 + g)
                  for place in places for g in range(repeats)]
    rows = [i for i in range(len(snippets)) for _ in range(repeats)]
    thoughts: list[dict[int, str]] = [{} for _ in rows]
    think_probs: list[dict[int, float]] = [{} for _ in rows]
    thought_ids: list[dict[int, tuple[int, ...]]] = [{} for _ in rows]
    log_q: list[dict[int, float]] = [{} for _ in rows]
    model_was_training = model.training
    model.eval()
    # what the rollouts of a snippet share (bos, the lines before its first decision line, that line's
    # indent) is fed once per snippet, then the cache is repeated to its rollouts
    first = [next((t for t, may in enumerate(d) if may), len(s)) for s, d in zip(snippets, decisions)]
    cache = _SharedCache(model, len(snippets), codec.pad_id)
    cache.feed([[codec.bos_id, *(i for line in s[:f] for i in codec.encode_line(line)),
                 *(ahead(codec, s, f, lookahead) + codec.indent_ids(s[f]) if f < len(s) else [])]
                for s, f in zip(snippets, first)])
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
                    pending[r] += (ahead(codec, snippets[i], t, lookahead) + codec.indent_ids(line)
                                   if t > first[i] else [])
                    deciding[r] = True
                else:
                    pending[r] += codec.encode_line(line)
        if not deciding.any():
            continue
        cache.feed(pending)
        pending = [[] for _ in rows]
        p_think = ((cache.last / temperature).softmax(-1) * comment).sum(-1)
        draws = torch.ones(len(rows))                    # a row draws only where it decides: its draws are its own
        draws[deciding] = uniform([generators[r] for r in deciding.nonzero().squeeze(1).tolist()])
        think = deciding & (draws < p_think)
        if think.any():
            for r, (ids, logq) in _sample_comment_lines(cache, think, comment, newline, max_thought_tokens,
                                                        temperature, generators).items():
                line = snippets[rows[r]][t]
                thoughts[r][t] = codec.split(line)[0] + _printable(codec.decode(ids))
                thought_ids[r][t] = tuple(ids)
                log_q[r][t] = logq
                pending[r] += closed(codec, ids) + codec.indent_ids(line)
        for r in deciding.nonzero().squeeze(1).tolist():
            pending[r] += codec.content_ids(snippets[rows[r]][t])
            think_probs[r][t] = float(p_think[r])
            if not think[r]:
                log_q[r][t] = float(torch.log1p(-p_think[r].clamp(max=1 - 1e-6)))
    model.train(model_was_training)
    rollouts = [Rollout(tuple(snippets[i]), thoughts[r], think_probs[r], thought_ids[r], log_q[r], lookahead)
                for r, i in enumerate(rows)]
    return [rollouts[i * repeats:(i + 1) * repeats] for i in range(len(snippets))]


def closed(codec: LineCodec, ids) -> list[int]:
    """A thought's content ids as the sequence holds them: a thought cut at the cap gets its forced newline."""
    ids = list(ids)
    return ids if ids and codec.newline_mask[ids[-1]] else ids + [codec.newline_id]


def ahead(codec: LineCodec, snippet, t: int, k: int) -> list[int]:
    """Ids of the k code lines from line t on (fewer at the end of the snippet): what a posterior-style q sees."""
    return [i for line in snippet[t:t + k] for i in codec.encode_line(line)]


def rollout_ids(codec: LineCodec, rollout: Rollout, view: str = "pi"
                ) -> tuple[list[int], list[tuple[int, int, tuple[int, int] | None]]]:
    """(ids, places): the rollout's token ids after bos, and per snippet line t ``(first, end, thought)``: where
    line t's content tokens start and end, and the ``(start, end)`` of the thought's content before it (None
    when there is none). Sampled thoughts keep q's exact ids (closed by a forced newline where cut); thoughts
    given as text are encoded by the line convention. ``view="q"`` is what q saw: each decision line's
    lookahead lines inserted before its indent."""
    check_choice("view", view, ("pi", "q"))
    ids, places = [codec.bos_id], []
    for t, line in enumerate(rollout.snippet):
        indent = codec.indent_ids(line)
        if view == "q" and t in rollout.log_q:
            ids += ahead(codec, rollout.snippet, t, rollout.lookahead)
        thought = None
        if t in rollout.thoughts:
            content = (closed(codec, rollout.thought_ids[t]) if t in rollout.thought_ids
                       else codec.content_ids(rollout.thoughts[t]))
            ids += codec.indent_ids(rollout.thoughts[t]) if t not in rollout.thought_ids else indent
            thought = (len(ids), len(ids) + len(content))
            ids += content
        ids += indent
        first = len(ids)
        ids += codec.content_ids(line)
        places.append((first, len(ids), thought))
    return ids, places


def _printable(text: str) -> str:
    """A sampled thought's text for the corpus: its first line, without characters that are not printable
    (bytes cut mid-character decode to U+FFFD); ``#`` when nothing is left."""
    text = text.split("\n")[0]
    return "".join(ch for ch in text if ch.isprintable() and ch != "\ufffd").rstrip() or "#"


def uniform(generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One draw in [0, 1) from each generator: (len(generators),)."""
    return torch.stack([torch.rand((), generator=generator) for generator in generators])


def _sample_comment_lines(cache: _SharedCache, think: torch.Tensor, comment: torch.Tensor, newline: torch.Tensor,
                          max_tokens: int, temperature: float, generators: Sequence[torch.Generator]
                          ) -> dict[int, tuple[list[int], float]]:
    """Sample one comment line per thinking row (``think``, bool (R,)) from the cache's current logits, each row
    with its own generator (``generators[r]``, inverse-CDF draws); returns row -> (the sampled content ids, log q
    of them at ``temperature``).

    The first token is drawn among comment tokens (its log q, log softmax at that token, includes the choice to
    think), the next ones freely until a token holding a newline or ``max_tokens`` tokens. Tokens are fed to a
    copy of the thinking rows' cache (the caller feeds the whole thought line to ``cache``)."""
    thinking = think.nonzero().squeeze(1)
    sub = cache.subset(thinking)
    active = torch.ones(len(thinking), dtype=torch.bool)
    sampled: list[list[int]] = [[] for _ in thinking]
    logq = torch.zeros(len(thinking), dtype=torch.float64)
    for step in range(max_tokens):
        logprobs = (sub.last / temperature).log_softmax(-1)
        cdf = (logprobs.exp() * comment if step == 0 else logprobs.exp()).cumsum(-1)             # (R', V)
        live = active.nonzero().squeeze(1)              # only rows still writing draw: their draws are their own
        drawn = torch.zeros(len(thinking))
        drawn[live] = uniform([generators[int(thinking[k])] for k in live.tolist()]) * cdf[live, -1]
        tokens = torch.searchsorted(cdf, drawn[:, None], right=True).squeeze(1).clamp(max=cdf.shape[1] - 1)
        logq += torch.where(active, logprobs.gather(1, tokens[:, None]).squeeze(1).double(), 0.0)
        for k in active.nonzero().squeeze(1).tolist():
            sampled[k].append(int(tokens[k]))
        active &= ~newline[tokens]
        if step + 1 == max_tokens or not active.any():
            break
        sub.feed([[int(token)] if on else [] for token, on in zip(tokens, active)])
    return {int(r): (ids, float(lq)) for r, ids, lq in zip(thinking, sampled, logq)}
