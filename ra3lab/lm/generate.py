"""Completing function bodies: ``HFGenerator`` over ``model.generate`` (CPU, tests) and
``VLLMGenerator`` over vLLM (GPU clusters, extra ``gpu``), with one ``complete`` contract.

Prompts end with ``"\\n"`` and are encoded line by line (:class:`~ra3lab.lm.codec.LineCodec`), as
training saw code. A completion is cut before the first stop string or the first non-empty line
without indent (the end of the function body), keeping the newline before the cut.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from ra3lab.errors import ConfigError, check
from ra3lab.lm.codec import LineCodec
from ra3lab.lm.padding import pad
from ra3lab.lm.tokenizer import load_tokenizer

STOP = ("\ndef ", "\nclass ", "\nif __name__")
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
    """Per row: done once its new text would be cut (a stop string or the end of the body is out)."""

    def __init__(self, codec: LineCodec, start: int, stop: Sequence[str]):
        self.codec, self.start, self.stop = codec, start, stop

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        texts = [self.codec.decode(row[self.start:].tolist()) for row in input_ids]
        return torch.tensor([cut(text, self.stop) != text for text in texts], device=input_ids.device)


class HFGenerator:
    """``complete`` with ``model.generate`` on a left-padded batch of all prompts."""

    def __init__(self, model, tokenizer):
        self.model, self.codec = model, LineCodec(tokenizer)

    def complete(self, prompts: Sequence[str], max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0,
                 stop: Sequence[str] = STOP) -> list[str]:
        """One completion per prompt: greedy at temperature 0, else sampled from the softmax at
        ``temperature`` (top-k and top-p of the model's generation config off), reproducibly per seed."""
        check(temperature >= 0, "temperature", temperature, "must be >= 0 (0 is greedy)")
        ids, mask = pad(prompt_ids(self.codec, prompts), self.codec.pad_id, left=True)
        width = ids.shape[1]
        sampling = ({"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0
                    else {"do_sample": False})
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            out = self.model.generate(
                input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device),
                max_new_tokens=max_new_tokens, pad_token_id=self.codec.pad_id, eos_token_id=self.codec.eos_id,
                stopping_criteria=StoppingCriteriaList([StopWhenCut(self.codec, width, stop)]), **sampling)
        return [cut(self.codec.decode(row[width:].tolist()), stop) for row in out]


class VLLMGenerator:
    """``complete`` with a vLLM engine over ``name_or_path`` (needs ``pip install 'ra3lab[gpu]'``).

    Prompts go in as token ids of the line convention; ``engine`` is passed to ``vllm.LLM``.
    """

    def __init__(self, name_or_path: str, tokenizer=None, **engine):
        try:
            import vllm
        except ImportError:
            raise ConfigError("generator", "vllm", "vLLM is not installed: pip install 'ra3lab[gpu]'") from None
        self.vllm = vllm
        self.codec = LineCodec(load_tokenizer(name_or_path) if tokenizer is None else tokenizer)
        self.engine = vllm.LLM(model=str(name_or_path), **engine)

    def complete(self, prompts: Sequence[str], max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0,
                 stop: Sequence[str] = STOP) -> list[str]:
        """As :meth:`HFGenerator.complete`."""
        params = self.vllm.SamplingParams(max_tokens=max_new_tokens, temperature=temperature, seed=seed,
                                          stop=list(stop), include_stop_str_in_output=True)
        outputs = self.engine.generate([{"prompt_token_ids": ids} for ids in prompt_ids(self.codec, prompts)],
                                       params)
        return [cut(output.outputs[0].text, stop) for output in outputs]
