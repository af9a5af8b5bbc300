"""Byte-level BPE tokenizers trained locally on code lines, and loading any Hugging Face tokenizer.

Training sees each line as the two pieces :class:`~ra3lab.lm.codec.LineCodec` encodes it as, the
indent and ``content + "\\n"``, so no merge ever crosses a line's indent or its end.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from ra3lab.errors import ConfigError, check

SPECIAL_TOKENS = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}
VERSION = 2     # bump when training changes, so cached tokenizers of older versions are not reused


def split_line(line: str) -> tuple[str, str]:
    """(indent, content) of one line: its leading spaces and tabs, and the rest."""
    check("\n" not in line, "line", line, "must be one line, without its newline")
    content = line.lstrip(" \t")
    return line[: len(line) - len(content)], content


def line_pieces(lines: Iterable[str]) -> Iterable[str]:
    """The strings each line is tokenized as: its indent (when not empty), then ``content + "\\n"``."""
    for line in lines:
        indent, content = split_line(line)
        if indent:
            yield indent
        yield content + "\n"


def train_tokenizer(lines: Iterable[str], vocab_size: int = 512, cache_dir: Path | str | None = None
                    ) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of ``vocab_size`` tokens (specials included) on ``lines`` (no ``"\\n"`` inside).

    With a ``cache_dir`` the result is saved under ``cache_dir/bpe-<hash>``, keyed by (lines,
    vocab_size, VERSION), and loaded from there when the same key comes again.
    """
    least = len(pre_tokenizers.ByteLevel.alphabet()) + len(SPECIAL_TOKENS)
    check(isinstance(vocab_size, int) and vocab_size >= least, "vocab_size", vocab_size,
          f"must be an integer >= {least} (256 byte tokens + 3 special tokens)")
    lines = list(lines)
    check(len(lines) > 0, "lines", lines, "give at least one line of text to train on")
    if cache_dir is None:
        return _train(lines, vocab_size)
    digest = hashlib.sha256(f"{VERSION}:{vocab_size}:".encode())
    for line in lines:
        digest.update(line.encode() + b"\n")
    path = Path(cache_dir) / f"bpe-{digest.hexdigest()[:16]}"
    if not path.is_dir():
        _save(_train(lines, vocab_size), path)
    return PreTrainedTokenizerFast.from_pretrained(path)


def _train(lines: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([       # whole texts split into the line convention's pieces,
        pre_tokenizers.Split(Regex("\n"), behavior="merged_with_previous"),     # so tokenizer(text) == the codec's ids
        pre_tokenizers.Split(Regex("^[ \t]+"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(line_pieces(lines), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, clean_up_tokenization_spaces=False, **SPECIAL_TOKENS)


def _save(tokenizer: PreTrainedTokenizerFast, path: Path) -> None:
    """Write then rename, so a killed process never leaves a half-written tokenizer under ``path``."""
    staging = path.with_name(f".{path.name}-{os.getpid()}")
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(path)
    except OSError:             # another process saved the same tokenizer first
        shutil.rmtree(staging)


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained`` of a local directory or a hub name; ConfigError if it cannot load."""
    check_local(name_or_path, "tokenizer")
    try:
        return AutoTokenizer.from_pretrained(str(name_or_path))
    except (OSError, ValueError) as error:
        raise ConfigError("tokenizer", str(name_or_path),
                          f"give a directory written by save_pretrained or a hub name ({str(error).splitlines()[0]})"
                          ) from None


def check_local(name_or_path: str | Path, field: str) -> None:
    """A name that reads as a filesystem path (absolute, ``./``, ``../``, ``~``) must be a directory."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_absolute() or text.startswith((".", "~")):
        check(path.is_dir(), field, text, "no such directory: give a directory written by save_pretrained")
