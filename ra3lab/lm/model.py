"""Causal LMs: tiny Llama/Qwen2 models built from a config in code, any saved or hub model loaded,
and the check that a tokenizer fits a model."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from ra3lab.errors import ConfigError, check, check_choice
from ra3lab.lm.tokenizer import check_local

ARCHS = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
DTYPES = ("auto", "float32", "bfloat16", "float16")   # auto: the dtype the checkpoint was saved in


def build_model(tokenizer, arch: str = "llama", hidden: int = 128, layers: int = 4, heads: int = 4,
                kv_heads: int | None = None, intermediate: int | None = None, max_positions: int = 1024,
                seed: int = 0) -> LlamaForCausalLM | Qwen2ForCausalLM:
    """A freshly initialised float32 model over ``tokenizer``'s vocabulary, the same for the same seed.

    kv_heads: key/value heads (grouped-query attention), default ``heads``; intermediate: MLP
    width, default ``4 * hidden``; tied input and output embeddings. The global RNG is untouched.
    """
    check_choice("arch", arch, tuple(ARCHS))
    kv_heads = heads if kv_heads is None else kv_heads
    intermediate = 4 * hidden if intermediate is None else intermediate
    for field, value in (("hidden", hidden), ("layers", layers), ("heads", heads), ("kv_heads", kv_heads),
                         ("intermediate", intermediate), ("max_positions", max_positions)):
        check(isinstance(value, int) and not isinstance(value, bool) and value >= 1, field, value,
              "must be an integer >= 1")
    check(hidden % (2 * heads) == 0, "hidden", hidden, f"must be a multiple of 2 * heads = {2 * heads} "
          "(rotary embeddings need an even head size)")
    check(heads % kv_heads == 0, "kv_heads", kv_heads, f"must divide heads = {heads}")
    config_class, model_class = ARCHS[arch]
    config = config_class(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate,
                          num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                          max_position_embeddings=max_positions, tie_word_embeddings=True,
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(config).float()


def load_model(name_or_path: str | Path, dtype: str = "auto", device: str = "cpu"):
    """``AutoModelForCausalLM.from_pretrained`` in ``dtype`` (default ``auto``: as saved) on ``device``, in eval
    mode.

    ConfigError (field ``model``) for a path that does not exist or does not hold a causal LM.
    """
    check_choice("dtype", dtype, DTYPES)
    check_local(name_or_path, "model")
    try:
        loaded_as = dtype if dtype == "auto" else getattr(torch, dtype)
        model = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=loaded_as)
    except (OSError, ValueError) as error:
        raise ConfigError("model", str(name_or_path),
                          f"give a causal LM directory written by save_pretrained or a hub name "
                          f"({str(error).splitlines()[0]})") from None
    return cast(torch.nn.Module, model).to(device).eval()    # the @wraps on PreTrainedModel.to hides its self from mypy


def check_compatible(model, tokenizer) -> None:
    """ConfigError (field ``tokenizer``) unless every token id of ``tokenizer`` has an embedding in
    ``model`` and its eos (and bos, where both define one) are the model's."""
    name = tokenizer.name_or_path or type(tokenizer).__name__
    rows = model.get_input_embeddings().num_embeddings
    check(len(tokenizer) <= rows, "tokenizer", name,
          f"has {len(tokenizer)} tokens but the model embeds {rows}: use the tokenizer the model was built or "
          "saved with, or call model.resize_token_embeddings(len(tokenizer)) before training")
    for token in ("eos", "bos"):
        ours, theirs = getattr(tokenizer, f"{token}_token_id"), getattr(model.config, f"{token}_token_id", None)
        theirs = [theirs] if isinstance(theirs, int) else theirs
        check(ours is None or not theirs or ours in theirs, "tokenizer", name,
              f"its {token} id {ours} is not the model's ({theirs}): use the tokenizer the model was built or "
              "saved with")
