"""ra3lab.memory: parameter counts against a count by hand and the published ones, and the per-GPU bytes."""

import pytest

from ra3lab.errors import ConfigError
from ra3lab.memory import (
    GIB,
    PAPER_MODELS,
    checkpointed_activation_bytes,
    count_parameters,
    inference_weight_bytes,
    llama,
    memory_table,
    qwen2,
    training_bytes_per_gpu,
)

PUBLISHED_COUNTS = {"Qwen2.5-0.5B": 494_032_768, "Qwen2.5-1.5B": 1_543_714_304, "Llama-3.2-1B": 1_235_814_400,
                    "Llama-3.2-3B": 3_212_749_824, "Qwen2.5-7B": 7_615_616_512, "Llama-3.1-8B": 8_030_261_248}


def count_by_hand(hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int, vocab: int,
                  tied: bool, qkv_bias: bool) -> int:
    """Embeddings + per layer (q, k, v, o with grouped-query attention, 3 MLP matrices, 2 RMSNorms)
    + the final RMSNorm + an untied lm_head."""
    head_dim = hidden // heads
    q_width, kv_width = heads * head_dim, kv_heads * head_dim
    attention = hidden * q_width + 2 * hidden * kv_width + q_width * hidden
    attention += (q_width + 2 * kv_width) if qkv_bias else 0
    layer = attention + 3 * hidden * intermediate + 2 * hidden
    return vocab * hidden + layers * layer + hidden + (0 if tied else vocab * hidden)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("arch, qkv_bias", [(llama, False), (qwen2, True)])
def test_the_meta_device_count_of_a_small_model_equals_the_count_by_hand(arch, qkv_bias, tied):
    shape = {"hidden": 64, "layers": 3, "heads": 8, "kv_heads": 2, "intermediate": 176, "vocab": 1000}
    assert count_parameters(arch(**shape, tied=tied)) == count_by_hand(**shape, tied=tied, qkv_bias=qkv_bias)


@pytest.mark.parametrize("name", list(PUBLISHED_COUNTS))
def test_the_paper_models_have_their_published_parameter_counts(name):
    assert count_parameters(PAPER_MODELS[name]) == PUBLISHED_COUNTS[name]


def test_ddp_holds_16_bytes_per_parameter_on_every_gpu_and_inference_2():
    assert training_bytes_per_gpu(1000) == training_bytes_per_gpu(1000, "ddp", gpus=16) == 16_000
    assert inference_weight_bytes(1000) == 2000


@pytest.mark.parametrize("gpus", [1, 2, 8, 16])
def test_fsdp_bytes_per_gpu_are_ddps_divided_by_the_gpu_count(gpus):
    parameters = PUBLISHED_COUNTS["Llama-3.1-8B"]
    assert training_bytes_per_gpu(parameters, "fsdp", gpus) == training_bytes_per_gpu(parameters) / gpus


def test_a_model_too_big_for_a_gpu_under_ddp_fits_under_fsdp_with_enough_gpus():
    gpu_bytes, parameters = 40 * GIB, 4_000_000_000     # 64e9 B of training states
    assert training_bytes_per_gpu(parameters, "ddp", gpus=8) > gpu_bytes
    assert training_bytes_per_gpu(parameters, "fsdp", gpus=1) > gpu_bytes
    assert training_bytes_per_gpu(parameters, "fsdp", gpus=2) <= gpu_bytes
    assert training_bytes_per_gpu(parameters // 2, "ddp") <= gpu_bytes


@pytest.mark.parametrize(("strategy", "gpus", "field"), [("zero2", 1, "strategy"), ("fsdp", 0, "gpus")])
def test_an_unknown_strategy_or_no_gpu_is_an_error_naming_it(strategy, gpus, field):
    with pytest.raises(ConfigError) as error:
        training_bytes_per_gpu(1000, strategy, gpus)
    assert error.value.field == field


def test_checkpointed_activations_are_the_bf16_layer_inputs():
    assert checkpointed_activation_bytes(PAPER_MODELS["Llama-3.2-1B"], seq_len=4096) == 2 * 2048 * 4096 * 16
    assert checkpointed_activation_bytes(PAPER_MODELS["Llama-3.1-8B"], seq_len=4096) == GIB


def test_the_table_gives_each_model_its_memory_in_gib():
    small = llama(hidden=64, layers=3, heads=8, kv_heads=2, intermediate=176, vocab=1000, tied=True)
    table = memory_table(fsdp_gpus=(8, 16), seq_len=512, models={"small": small})
    row = table.loc["small"]
    parameters = count_parameters(small)
    assert list(table.columns) == ["parameters", "inference_gib", "ddp_gib", "fsdp8_gib", "fsdp16_gib",
                                   "activations_gib_per_seq"]
    assert row["parameters"] == parameters
    assert row["ddp_gib"] == pytest.approx(16 * parameters / GIB)
    assert row["fsdp16_gib"] == pytest.approx(row["ddp_gib"] / 16)
    assert row["inference_gib"] == pytest.approx(2 * parameters / GIB)
    assert row["activations_gib_per_seq"] == pytest.approx(2 * 64 * 512 * 3 / GIB)
