"""Completing function bodies: ``HFGenerator`` over ``model.generate`` (CPU, tests; the default generator of
evaluation and of RLVR's rollouts) and ``VLLMGenerator`` over vLLM (GPU clusters, extra ``gpu``), with one
``generate`` contract; a run's ``generation.backend`` (hf | vllm) picks one (:func:`generator_for`).

Prompts end with ``"\\n"`` and are encoded line by line (:class:`~ra3lab.lm.codec.LineCodec`), as
training saw code. A completion is cut before the first stop string or the first non-empty line
without indent (the end of the function body), keeping the newline before the cut; one whose body
had not ended when it used its token budget is *truncated*.

Decodings (``DECODINGS``): ``sample`` (softmax at a temperature; top-k, top-p and repetition penalty off, so
the model's tempered log-probabilities are those of the sampler, as GRPO needs), ``greedy``,
and ``decision_greedy``: greedy, except that at each line start (after the line's indent) the model
thinks, i.e. writes a ``#`` comment line, exactly when its total mass on comment tokens exceeds 0.5
(the quantity the E-step samples the choice to think from). Plain greedy decoding almost never thinks,
since a single comment token is rarely the argmax.
"""

from __future__ import annotations

import importlib.util
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from ra3lab.errors import ConfigError, check, check_choice
from ra3lab.lm.codec import LineCodec
from ra3lab.lm.padding import pad
from ra3lab.lm.tokenizer import load_tokenizer

STOP = ("\ndef ", "\nclass ", "\nif __name__")
DECODINGS = ("sample", "greedy", "decision_greedy")
BACKENDS = ("hf", "vllm")
VLLM_MODES = ("colocate", "server")   # TRL's: vLLM in the training processes, or a `trl vllm-serve` server
BODY_END = re.compile(r"\n(?=\S)")      # a line break before a non-empty line without indent


def cut(completion: str, stop: Sequence[str] = STOP) -> str:
    """``completion`` up to the first stop string or unindented line; a newline before the cut is kept.

    The completion is read as following a newline, so a stop or an unindented line at its very
    start cuts it to ``""``.
    """
    text = "\n" + completion
    ends = [text.find(s) + s.startswith("\n") for s in stop if s in text]     # a leading newline stays
    body_end = BODY_END.search(text)
    if body_end:
        ends.append(body_end.start() + 1)
    return text[1: min(ends)] if ends else completion


def prompt_ids(codec: LineCodec, prompts: Sequence[str]) -> list[list[int]]:
    for prompt in prompts:
        check(prompt.endswith("\n"), "prompts", prompt[-80:], "each prompt must end with a newline")
    return [codec.encode_lines(prompt[:-1].split("\n"))[0] for prompt in prompts]


class StopWhenCut(StoppingCriteria):
    """Per row: done once its new text would be cut (a stop string or the end of the body is out), or once it
    holds ``budgets[row]`` new tokens (all rows share one budget when ``budgets`` is None)."""

    def __init__(self, codec: LineCodec, start: int, stop: Sequence[str], budgets: Sequence[int] | None = None):
        self.codec, self.start, self.stop = codec, start, stop
        self.budgets = None if budgets is None else torch.tensor(list(budgets))

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        texts = [self.codec.decode(row[self.start:].tolist()) for row in input_ids]
        done = torch.tensor([cut(text, self.stop) != text for text in texts])
        if self.budgets is not None:
            done |= input_ids.shape[1] - self.start >= self.budgets
        return cast(torch.BoolTensor, done.to(input_ids.device))


class DecisionGreedy(LogitsProcessor):
    """``decision_greedy``'s choice at line starts: where a row's current line holds only indentation so far,
    keep only comment tokens when their mass exceeds 0.5, else forbid them (scores are then argmax-ed)."""

    def __init__(self, codec: LineCodec, start: int):
        self.codec, self.start = codec, start
        self.texts = codec.token_texts

    def at_line_start(self, row: list[int]) -> bool:
        """Whether the generated tokens ``row`` end at a line start (the prompt ends with a newline)."""
        for token in reversed(row):
            text = self.texts[token]
            if "\n" in text:
                return not text.rsplit("\n", 1)[1].strip(" \t")
            if text.strip(" \t"):
                return False
        return True

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        comment = self.codec.comment_mask[: scores.shape[-1]].to(scores.device)
        mass = (scores.float().softmax(-1) * comment).sum(-1)                       # (B,)
        starts = torch.tensor([self.at_line_start(row[self.start:].tolist()) for row in input_ids],
                              device=scores.device)
        forbidden = torch.where((mass > 0.5)[:, None], ~comment, comment) & starts[:, None]
        return cast(torch.FloatTensor, scores.masked_fill(forbidden, float("-inf")))


class RowSampler(LogitsProcessor):
    """Sampling at ``temperature`` with each row's own random numbers: greedy decoding over ``scores /
    temperature`` plus Gumbel noise drawn from the row's generator is a draw from the row's softmax at
    ``temperature`` (the Gumbel-max trick), and a row's draws do not depend on which rows share its batch."""

    def __init__(self, seeds: Sequence[int], temperature: float):
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.temperature = temperature

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        uniform = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in self.generators])   # (B, V)
        gumbel = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(uniform.dtype).tiny)))
        return cast(torch.FloatTensor, scores.float() / self.temperature + gumbel.to(scores.device))


@dataclass(frozen=True)
class Completion:
    """One completion: its text cut at the end of the body, the tokens generated up to that cut, whether the
    budget ran out before the body ended, and ``ids``: the generated token ids through the one that ended the
    completion (the first token past the end of the body, or an eos: the model's choice to stop), all of them
    when it was truncated."""

    text: str
    tokens: int
    truncated: bool
    ids: tuple[int, ...]


def check_decoding(decoding: str, temperature: float, field: str = "eval") -> None:
    """ConfigError unless ``decoding`` is one of DECODINGS and ``sample`` has a temperature > 0."""
    check_choice(f"{field}.decoding", decoding, DECODINGS)
    check(decoding != "sample" or temperature > 0, f"{field}.temperature", temperature,
          "must be > 0 when sampling (or choose eval.decoding=greedy)")


def completion_of(codec: LineCodec, ids: list[int], budget: int, stop: Sequence[str] = STOP) -> Completion:
    """The :class:`Completion` of one row's generated ``ids`` (what follows its first eos or pad ignored)."""
    ends = [ids.index(token) for token in {codec.eos_id, codec.pad_id} if token in ids]
    end = min(ends) if ends else len(ids)
    text = codec.decode(ids[:end])
    kept = cut(text, stop)
    if kept != text:
        tokens = next(n for n in range(1, end + 1) if len(codec.decode(ids[:n])) > len(kept))
        return Completion(kept, tokens, truncated=False, ids=tuple(ids[:tokens]))
    return Completion(kept, end, truncated=not ends and end >= budget, ids=tuple(ids[:end + 1]))


class Generator(ABC):
    """What both backends share: ``complete`` over their ``generate``, and one budget per prompt."""

    codec: LineCodec

    @abstractmethod
    def generate(self, prompts: Sequence[str], budgets: int | Sequence[int] = 128, decoding: str = "sample",
                 temperature: float = 1.0, seed: int = 0, stop: Sequence[str] = STOP) -> list[Completion]:
        """One :class:`Completion` per prompt within its budget (see :class:`HFGenerator`)."""

    @staticmethod
    def per_prompt(budgets: int | Sequence[int], prompts: Sequence[str]) -> list[int]:
        """One budget per prompt (one int is every prompt's); ConfigError unless each is >= 1."""
        budgets = [budgets] * len(prompts) if isinstance(budgets, int) else list(budgets)
        check(len(budgets) == len(prompts) and all(b >= 1 for b in budgets), "budgets", budgets[:4],
              "give one budget >= 1 per prompt (or one for all)")
        return budgets

    def complete(self, prompts: Sequence[str], max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0,
                 stop: Sequence[str] = STOP) -> list[str]:
        """The texts of :meth:`generate`: greedy at temperature 0, else sampled at ``temperature``."""
        check(temperature >= 0, "temperature", temperature, "must be >= 0 (0 is greedy)")
        decoding = "sample" if temperature > 0 else "greedy"
        return [c.text for c in self.generate(prompts, max_new_tokens, decoding, temperature or 1.0, seed, stop)]


class HFGenerator(Generator):
    """``generate`` with ``model.generate`` on a left-padded batch of all prompts."""

    def __init__(self, model, tokenizer):
        self.model, self.codec = model, LineCodec(tokenizer, model.config.vocab_size)

    def generate(self, prompts: Sequence[str], budgets: int | Sequence[int] = 128, decoding: str = "sample",
                 temperature: float = 1.0, seed: int = 0, stop: Sequence[str] = STOP,
                 row_seeds: Sequence[int] | None = None) -> list[Completion]:
        """One :class:`Completion` per prompt, each of at most its budget of new tokens (one int for all, or one
        per prompt); sampled at ``temperature`` (top-k, top-p and repetition penalty of the model's generation
        config off), greedy, or decision-greedy (module docstring); reproducible per seed, the random state of
        the caller (CPU and CUDA) left as it was. ``row_seeds`` (sampling only): one seed per prompt in place of
        ``seed``, each row drawing its own random numbers (:class:`RowSampler`), so that a row's completion is the
        same in any batch: in one process or split over several."""
        check_decoding(decoding, temperature)
        budgets = self.per_prompt(budgets, prompts)
        check(row_seeds is None or (decoding == "sample" and len(row_seeds) == len(prompts)), "row_seeds",
              None if row_seeds is None else len(row_seeds), "give one seed per prompt, when sampling")
        ids, mask = pad(prompt_ids(self.codec, prompts), self.codec.pad_id, left=True)
        width = ids.shape[1]
        options: dict[str, Any] = (
            {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0}
            if decoding == "sample" and row_seeds is None
            else {"do_sample": False, "temperature": None, "top_k": None, "top_p": None})
        if decoding == "decision_greedy":
            options["logits_processor"] = LogitsProcessorList([DecisionGreedy(self.codec, width)])
        if row_seeds is not None:
            options["logits_processor"] = LogitsProcessorList([RowSampler(row_seeds, temperature)])
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(seed)
            out = self.model.generate(
                input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device),
                max_new_tokens=max(budgets), pad_token_id=self.codec.pad_id, eos_token_id=self.codec.eos_id,
                stopping_criteria=StoppingCriteriaList([StopWhenCut(self.codec, width, stop, budgets)]), **options)
        return [completion_of(self.codec, row[width:width + budget].tolist(), budget, stop)
                for row, budget in zip(out.cpu(), budgets)]


class VLLMGenerator(Generator):
    """``generate`` with a vLLM engine over ``name_or_path`` (needs ``pip install 'ra3lab[gpu]'``).

    Prompts go in as token ids of the line convention; ``engine`` is passed to ``vllm.LLM``. ``decision_greedy``
    needs a logits processor per step, which this backend does not offer: it is refused.
    """

    def __init__(self, name_or_path: str, tokenizer=None, **engine):
        try:
            import vllm
        except ImportError:
            raise ConfigError("generation.backend", "vllm", NO_VLLM) from None
        self.vllm = vllm
        self.codec = LineCodec(load_tokenizer(name_or_path) if tokenizer is None else tokenizer)
        self.engine = vllm.LLM(model=str(name_or_path), **engine)

    def generate(self, prompts: Sequence[str], budgets: int | Sequence[int] = 128, decoding: str = "sample",
                 temperature: float = 1.0, seed: int = 0, stop: Sequence[str] = STOP) -> list[Completion]:
        """As :meth:`HFGenerator.generate` for ``sample`` and ``greedy``."""
        check_decoding(decoding, temperature)
        check(decoding != "decision_greedy", "eval.decoding", decoding,
              "the vLLM backend offers sample and greedy; use the HF backend for decision_greedy")
        budgets = self.per_prompt(budgets, prompts)
        params = [self.vllm.SamplingParams(max_tokens=budget, temperature=temperature if decoding == "sample" else 0,
                                           seed=seed + row, stop=list(stop), include_stop_str_in_output=True)
                  for row, budget in enumerate(budgets)]        # a seed per row: repeated prompts differ
        outputs = self.engine.generate([{"prompt_token_ids": ids} for ids in prompt_ids(self.codec, prompts)],
                                       params)
        return [Completion(cut(output.outputs[0].text, stop), len(output.outputs[0].token_ids),
                           output.outputs[0].finish_reason == "length", tuple(output.outputs[0].token_ids))
                for output in outputs]


NO_VLLM = "vLLM is not installed here: pip install 'ra3lab[gpu]' on the GPU machines, or generation.backend=hf"


def check_generation(generation: Mapping, cuda: bool, field: str = "generation") -> None:
    """ConfigError naming the key and its fix where a run's ``generation`` block cannot be honoured: an unknown
    backend or vLLM mode, vLLM not installed, vLLM without a GPU (``cuda``: whether the run places its models on
    GPUs), a GPU memory share outside (0, 1]."""
    check_choice(f"{field}.backend", generation["backend"], BACKENDS)
    check_choice(f"{field}.vllm_mode", generation["vllm_mode"], VLLM_MODES)
    share = generation["gpu_memory_utilization"]
    check(isinstance(share, float | int) and 0 < share <= 1, f"{field}.gpu_memory_utilization", share,
          "must be a share of each GPU's memory in (0, 1]")
    if generation["backend"] == "vllm":
        check(importlib.util.find_spec("vllm") is not None, f"{field}.backend", "vllm", NO_VLLM)
        check(cuda, f"{field}.backend", "vllm", "vLLM generates on GPUs and this run has none: "
              "generation.backend=hf, or a GPU (runtime.device=auto or cuda)")


def generator_for(generation: Mapping | None, model, tokenizer) -> Generator:
    """The generator ``generation.backend`` names: :class:`HFGenerator` over ``model`` (also without a
    ``generation`` block), or a :class:`VLLMGenerator` over the checkpoint ``model`` was loaded from, in its dtype,
    taking ``generation.gpu_memory_utilization`` of the GPU."""
    if generation is None or generation["backend"] == "hf":
        return HFGenerator(model, tokenizer)
    return VLLMGenerator(model.name_or_path, tokenizer, dtype=str(model.dtype).removeprefix("torch."),
                         gpu_memory_utilization=float(generation["gpu_memory_utilization"]))
