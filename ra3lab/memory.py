"""Per-GPU memory to train and serve the paper's model sizes, from exact parameter counts.

Training is AdamW under bf16 mixed precision. Per parameter a GPU holds bf16 weights (2 B), bf16 gradients
(2 B), fp32 master weights (4 B) and AdamW's two fp32 moments (8 B): 16 B. DDP keeps all of it on every GPU;
FSDP with full sharding (ZeRO-3) over N GPUs keeps 1/N of each on each GPU. These are the model states only:
activations, the CUDA context, NCCL buffers and allocator fragmentation come on top, and FSDP also gathers
one layer's full bf16 weights (and gradients) at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PretrainedConfig, Qwen2Config

from ra3lab.errors import check, check_choice

GIB = 2**30
TRAINING_BYTES_PER_PARAMETER = {"weights (bf16)": 2, "gradients (bf16)": 2, "master weights (fp32)": 4,
                                "adam moments (fp32)": 8}
INFERENCE_BYTES_PER_PARAMETER = 2   # bf16 weights
ACTIVATION_BYTES = 2                # a bf16 activation
STRATEGIES = ("ddp", "fsdp")


def llama(hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int, vocab: int,
          tied: bool) -> LlamaConfig:
    """A Llama-3 architecture: grouped-query attention, SwiGLU MLP, RMSNorm, no biases."""
    return LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                       num_key_value_heads=kv_heads, intermediate_size=intermediate, vocab_size=vocab,
                       tie_word_embeddings=tied)


def qwen2(hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int, vocab: int,
          tied: bool) -> Qwen2Config:
    """A Qwen2.5 architecture: Llama's, plus biases on the query, key and value projections."""
    return Qwen2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                       num_key_value_heads=kv_heads, intermediate_size=intermediate, vocab_size=vocab,
                       tie_word_embeddings=tied)


PAPER_MODELS: dict[str, PretrainedConfig] = {
    "Qwen2.5-0.5B": qwen2(896, 24, 14, 2, 4864, 151936, tied=True),
    "Qwen2.5-1.5B": qwen2(1536, 28, 12, 2, 8960, 151936, tied=True),
    "Llama-3.2-1B": llama(2048, 16, 32, 8, 8192, 128256, tied=True),
    "Llama-3.2-3B": llama(3072, 28, 24, 8, 8192, 128256, tied=True),
    "Qwen2.5-7B": qwen2(3584, 28, 28, 4, 18944, 152064, tied=False),
    "Llama-3.1-8B": llama(4096, 32, 32, 8, 14336, 128256, tied=False),
}


def count_parameters(config: PretrainedConfig) -> int:
    """The causal LM's parameter count (tied embeddings once), from a model built on the meta device."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(parameter.numel() for parameter in model.parameters())


def training_bytes_per_gpu(parameters: int, strategy: str = "ddp", gpus: int = 1) -> float:
    """Bytes of weights, gradients, master weights and AdamW moments on each GPU (no activations).

    ddp: 16 B per parameter on every GPU, whatever ``gpus``; fsdp: the same divided by ``gpus``.
    """
    check_choice("strategy", strategy, STRATEGIES)
    check(isinstance(gpus, int) and gpus >= 1, "gpus", gpus, "must be an integer >= 1")
    total = parameters * sum(TRAINING_BYTES_PER_PARAMETER.values())
    return total / gpus if strategy == "fsdp" else float(total)


def inference_weight_bytes(parameters: int) -> int:
    """Bytes of the bf16 weights alone: what vLLM loads on one GPU before it sizes its KV cache."""
    return parameters * INFERENCE_BYTES_PER_PARAMETER


def checkpointed_activation_bytes(config: PretrainedConfig, seq_len: int) -> int:
    """Bytes per sequence of ``seq_len`` tokens that gradient checkpointing keeps: each layer's bf16 input,
    ``2 * hidden * seq_len * layers``.

    A lower bound: the backward pass recomputes one layer's full activations at a time, and the logits
    (``seq_len * vocab``, which transformers' loss casts to fp32) come on top.
    """
    return ACTIVATION_BYTES * config.hidden_size * seq_len * config.num_hidden_layers


def memory_table(fsdp_gpus: Sequence[int] = (8, 16), seq_len: int = 4096,
                 models: dict[str, PretrainedConfig] | None = None) -> pd.DataFrame:
    """One row per model (default ``PAPER_MODELS``), memory in GiB per GPU.

    Columns: ``parameters``; ``inference_gib`` (bf16 weights); ``ddp_gib`` (training states under DDP, any
    GPU count); ``fsdp{N}_gib`` for each N of ``fsdp_gpus``; ``activations_gib_per_seq`` (checkpointed
    layer inputs of one sequence of ``seq_len`` tokens, a lower bound).
    """
    rows = []
    for name, config in (PAPER_MODELS if models is None else models).items():
        parameters = count_parameters(config)
        row: dict[str, str | int | float] = {"model": name, "parameters": parameters,
                                             "inference_gib": inference_weight_bytes(parameters) / GIB,
                                             "ddp_gib": training_bytes_per_gpu(parameters) / GIB}
        for gpus in fsdp_gpus:
            row[f"fsdp{gpus}_gib"] = training_bytes_per_gpu(parameters, "fsdp", gpus) / GIB
        row["activations_gib_per_seq"] = checkpointed_activation_bytes(config, seq_len) / GIB
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")
