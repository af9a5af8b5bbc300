"""Code as lines of tokens: the convention every E-step, M-step and generator shares.

A line is ``indent + content``; it is tokenized as ``tokens(indent) + tokens(content + "\\n")``
(no indent tokens when the indent is empty), so a program's ids are its lines' ids one after
another, and a thought (``    # keep evens``) inserted before a code line is one more line. The
first content token is the line's *decision* token: the line is a thought iff that token's text
starts with ``#`` (``comment_mask``); a thought ends at a token holding ``"\\n"`` (``newline_mask``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import torch

from ra3lab.errors import check
from ra3lab.lm.tokenizer import line_pieces, split_line


class LineCodec:
    """Encode lines with ``tokenizer`` (any Hugging Face tokenizer) by the line convention.

    ``vocab_size``: length V of the masks, at least ``len(tokenizer)``; pass
    ``model.config.vocab_size`` when the model pads its vocabulary, so masks index its logits.
    ``bos_id`` and ``pad_id`` fall back to ``eos_id`` for tokenizers without those tokens.
    """

    def __init__(self, tokenizer, vocab_size: int | None = None):
        self.tokenizer = tokenizer
        self.vocab_size = len(tokenizer) if vocab_size is None else vocab_size
        check(self.vocab_size >= len(tokenizer), "vocab_size", vocab_size,
              f"must be >= len(tokenizer) = {len(tokenizer)}")
        self.eos_id = tokenizer.eos_token_id
        check(self.eos_id is not None, "tokenizer", tokenizer.name_or_path, "needs an eos token")
        self.bos_id = self.eos_id if tokenizer.bos_token_id is None else tokenizer.bos_token_id
        self.pad_id = self.eos_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id

    split = staticmethod(split_line)

    def _encode(self, pieces: list[str]) -> list[list[int]]:
        return self.tokenizer(pieces, add_special_tokens=False)["input_ids"] if pieces else []

    def indent_ids(self, line: str) -> list[int]:
        """Ids of the line's indent (empty for an unindented line)."""
        indent, _ = split_line(line)
        return self._encode([indent])[0] if indent else []

    def content_ids(self, line: str) -> list[int]:
        """Ids of ``content + "\\n"``; the first is the decision token."""
        return self._encode([split_line(line)[1] + "\n"])[0]

    def encode_line(self, line: str) -> list[int]:
        """``indent_ids(line) + content_ids(line)``."""
        return [i for piece in self._encode(list(line_pieces([line]))) for i in piece]

    def encode_lines(self, lines: Sequence[str], bos: bool = True) -> tuple[list[int], list[tuple[int, int]]]:
        """(ids, spans): the lines' ids one after another, after ``bos_id`` if ``bos``, and each line's
        ``(start, end)`` in ids, so ``ids[start:end] == encode_line(line)``."""
        pieces = self._encode(list(line_pieces(lines)))
        ids, spans, k = [self.bos_id] if bos else [], [], 0
        for line in lines:
            start = len(ids)
            if split_line(line)[0]:
                ids += pieces[k]
                k += 1
            ids += pieces[k]
            k += 1
            spans.append((start, len(ids)))
        return ids, spans

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens dropped."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)

    @cached_property
    def token_texts(self) -> list[str]:
        """The text of every token id below V (ids past the tokenizer's own: empty)."""
        texts = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))],
                                            clean_up_tokenization_spaces=False)
        return texts + [""] * (self.vocab_size - len(texts))

    @cached_property
    def newline_id(self) -> int:
        """The id of ``"\\n"`` alone: the forced end of a thought cut at its token cap."""
        ids = self._encode(["\n"])[0]
        check(len(ids) == 1, "tokenizer", self.tokenizer.name_or_path, 'must encode "\\n" as one token')
        return ids[0]

    @cached_property
    def comment_mask(self) -> torch.Tensor:
        """BoolTensor[V]: tokens whose text starts with ``#`` (a thought's decision token is one)."""
        return torch.tensor([text.startswith("#") for text in self.token_texts])

    @cached_property
    def newline_mask(self) -> torch.Tensor:
        """BoolTensor[V]: tokens whose text holds ``"\\n"`` (every line, thoughts too, ends at one)."""
        return torch.tensor(["\n" in text for text in self.token_texts])
