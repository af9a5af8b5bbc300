"""ra3lab.lm at tiny scale: the tokenizer and its cache, the line convention, model building, loading
and saving, scoring with prefix reuse against the naive forward, NTP training, generation, and
`ra3lab bench estep` (its report's contract, no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import random
import sysconfig
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from transformers import DistilBertConfig, DistilBertModel, LlamaForCausalLM, Qwen2ForCausalLM

from ra3lab.bench.estep import run as bench_estep
from ra3lab.bench.estep import trie_size
from ra3lab.errors import ConfigError
from ra3lab.lm import (
    HFGenerator,
    LineCodec,
    VLLMGenerator,
    build_model,
    check_compatible,
    load_model,
    load_tokenizer,
    token_logprobs,
    train_ntp,
    train_tokenizer,
)
from ra3lab.lm.generate import cut

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TRAIN_FILES = ("textwrap.py", "heapq.py", "shlex.py", "string.py")
OPS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%", "pow": "**"}


def read_lines(name: str) -> list[str]:
    return (STDLIB / name).read_text(encoding="utf-8").split("\n")


def pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.tensor([row + [0] * (width - len(row)) for row in rows])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
    return ids, mask


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tokenizers")


@pytest.fixture(scope="module")
def tokenizer(cache_dir):
    return train_tokenizer([line for name in TRAIN_FILES for line in read_lines(name)], 512, cache_dir)


@pytest.fixture(scope="module")
def codec(tokenizer) -> LineCodec:
    return LineCodec(tokenizer)


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_model(tokenizer, hidden=32, layers=2, heads=2, seed=0).eval()


# --- tokenizer and the line convention -----------------------------------------------------------

def test_round_trip_of_real_code(codec):
    lines = read_lines("json/decoder.py") + ["\tx = 'é ✓'  # tab indent, unicode", "    ", ""]
    ids, spans = codec.encode_lines(lines)
    assert ids[0] == codec.bos_id
    assert codec.decode(ids) == "\n".join(lines) + "\n"
    assert [codec.decode(ids[start:end]) for start, end in spans] == [line + "\n" for line in lines]


def test_cache_hit_returns_the_same_tokenizer(tokenizer, cache_dir):
    again = train_tokenizer([line for name in TRAIN_FILES for line in read_lines(name)], 512, cache_dir)
    assert again.get_vocab() == tokenizer.get_vocab()
    assert again.name_or_path == tokenizer.name_or_path and Path(again.name_or_path).parent == cache_dir
    assert len(list(cache_dir.iterdir())) == 1
    text = "\n".join(read_lines("bisect.py"))
    assert again(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert len(tokenizer) == 512
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<bos>", "<eos>", "<pad>")


def test_line_convention(codec):
    lines = read_lines("bisect.py")[:40]
    thought = "    # keep evens"
    lines.insert(12, thought)
    ids, spans = codec.encode_lines(lines, bos=False)
    assert ids == [i for line in lines for i in codec.encode_line(line)]
    assert codec.encode_lines(lines)[0] == [codec.bos_id] + ids
    assert [ids[start:end] for start, end in spans] == [codec.encode_line(line) for line in lines]
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in pairwise(spans)) and spans[-1][1] == len(ids)
    for line, (start, end) in zip(lines, spans):
        indent, content = codec.split(line)
        assert indent + content == line and not content.startswith((" ", "\t"))
        assert codec.encode_line(line) == codec.indent_ids(line) + codec.content_ids(line)
        decision = ids[start + len(codec.indent_ids(line))]
        assert bool(codec.comment_mask[decision]) == content.startswith("#")
        assert codec.newline_mask[ids[end - 1]]
    start, _ = spans[12]
    assert codec.decode([ids[start + len(codec.indent_ids(thought))]]).startswith("#")
    assert codec.indent_ids("x = 1") == [] and codec.content_ids("")[-1] == codec.encode_line("")[-1]
    assert codec.comment_mask.shape == codec.newline_mask.shape == (512,)
    assert codec.comment_mask.dtype == torch.bool and codec.comment_mask.any() and codec.newline_mask.any()
    with pytest.raises(ConfigError, match="line"):
        codec.encode_line("a\nb")


# --- models: build, check, save and load ---------------------------------------------------------

def test_build_model_is_deterministic_per_seed(tokenizer):
    before = torch.random.get_rng_state()
    a, b, c = (build_model(tokenizer, hidden=32, layers=1, heads=2, seed=s) for s in (0, 0, 1))
    assert torch.equal(torch.random.get_rng_state(), before)           # the global RNG is untouched
    assert isinstance(a, LlamaForCausalLM) and a.dtype == torch.float32
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)
    qwen = build_model(tokenizer, arch="qwen2", hidden=32, layers=1, heads=4, kv_heads=2)
    assert isinstance(qwen, Qwen2ForCausalLM) and qwen.config.num_key_value_heads == 2
    assert qwen.config.vocab_size == len(tokenizer)
    with pytest.raises(ConfigError, match="arch"):
        build_model(tokenizer, arch="gpt2")
    with pytest.raises(ConfigError, match="kv_heads"):
        build_model(tokenizer, hidden=32, heads=4, kv_heads=3)


def test_check_compatible(model, tokenizer):
    check_compatible(model, tokenizer)
    small = build_model(tokenizer, hidden=32, layers=1, heads=2)
    small.resize_token_embeddings(100)
    with pytest.raises(ConfigError, match="tokenizer.*resize_token_embeddings"):
        check_compatible(small, tokenizer)


def test_load_errors(tmp_path, tokenizer):
    with pytest.raises(ConfigError, match="model"):
        load_model(tmp_path / "missing")
    tokenizer.save_pretrained(tmp_path / "only-a-tokenizer")
    with pytest.raises(ConfigError, match="model"):
        load_model(tmp_path / "only-a-tokenizer")
    encoder = DistilBertModel(DistilBertConfig(vocab_size=64, dim=16, n_layers=1, n_heads=2, hidden_dim=32))
    encoder.save_pretrained(tmp_path / "encoder")
    with pytest.raises(ConfigError, match="model.*Unrecognized configuration class"):
        load_model(tmp_path / "encoder")
    with pytest.raises(ConfigError, match="tokenizer"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(ConfigError, match="dtype"):
        load_model(tmp_path, dtype="float8")


def test_save_and_load_round_trip(tmp_path, model, tokenizer):
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    loaded, loaded_tokenizer = load_model(tmp_path / "model"), load_tokenizer(tmp_path / "model")
    check_compatible(loaded, loaded_tokenizer)
    ids, _ = LineCodec(loaded_tokenizer).encode_lines(read_lines("bisect.py")[:20])
    assert ids == LineCodec(tokenizer).encode_lines(read_lines("bisect.py")[:20])[0]
    with torch.no_grad():
        assert torch.equal(loaded(torch.tensor([ids])).logits, model(torch.tensor([ids])).logits)


# --- scoring ---------------------------------------------------------------------------------------

def test_token_logprobs_of_a_padded_batch_match_each_row_alone(model, codec):
    lines = read_lines("textwrap.py")[100:130]
    rows = [codec.encode_lines(lines[:n])[0] for n in (3, 12, 24)]
    ids, mask = pad(rows)
    with torch.no_grad():
        logprobs = token_logprobs(model, ids, mask)
        for r, row in enumerate(rows):
            alone = model(torch.tensor([row])).logits[0, :-1].log_softmax(-1)
            expected = alone.gather(1, torch.tensor(row[1:])[:, None]).squeeze(1)
            assert torch.allclose(logprobs[r, :len(row) - 1], expected, atol=1e-4)
    assert logprobs.shape == (3, ids.shape[1] - 1) and (logprobs[mask[:, 1:] == 0] == 0).all()



def programs(codec: LineCodec, n: int, seed: int) -> list[list[int]]:
    """n token sequences, each three of the OPS functions in a random order, then eos."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lines = [line for name in rng.sample(sorted(OPS), 3)
                 for line in (f"def {name}(a, b):", f"    return a {OPS[name]} b", "")]
        out.append(codec.encode_lines(lines)[0] + [codec.eos_id])
    return out


@pytest.fixture(scope="module")
def trained(tokenizer, codec):
    model = build_model(tokenizer, hidden=64, layers=2, heads=2, seed=0)
    logged = []
    losses = train_ntp(model, programs(codec, 64, seed=0), steps=100, batch_size=8, log=lambda *a: logged.append(a))
    return model, losses, logged


def test_train_ntp_lowers_the_loss(trained):
    model, losses, logged = trained
    assert len(losses) == 100 and not model.training
    assert sum(losses[-5:]) / 5 < 0.1 * sum(losses[:5]) / 5
    assert [step for step, _ in logged] == list(range(10, 101, 10)) and logged[-1][1] == losses[-1]


def test_train_ntp_is_deterministic_per_seed(tokenizer, codec):
    sequences = programs(codec, 16, seed=1)
    mask = [[0] * 5 + [1] * (len(s) - 5) for s in sequences]
    runs = [train_ntp(build_model(tokenizer, hidden=16, layers=1, heads=2), sequences, steps=4, batch_size=4,
                      seed=seed, loss_mask=mask) for seed in (0, 0, 1)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    with pytest.raises(ConfigError, match="loss_mask"):
        train_ntp(build_model(tokenizer, hidden=16, layers=1, heads=2), sequences, steps=1, loss_mask=mask[:3])


def test_generator_is_deterministic_and_stops_at_the_end_of_the_body(trained, tokenizer):
    generator = HFGenerator(trained[0], tokenizer)
    prompts = ["def add(a, b):\n", "def mod(a, b):\n"]
    first = generator.complete(prompts, max_new_tokens=48)
    assert first == generator.complete(prompts, max_new_tokens=48)
    assert first == ["    return a + b\n\n", "    return a % b\n\n"]     # cut before the next "def"
    sampled = generator.complete(prompts, max_new_tokens=16, temperature=1.0, seed=3)
    assert sampled == generator.complete(prompts, max_new_tokens=16, temperature=1.0, seed=3)
    with pytest.raises(ConfigError, match="prompts"):
        generator.complete(["def add(a, b):"])


def test_row_sampler_draws_from_the_tempered_softmax_one_row_at_a_time():
    from ra3lab.lm.generate import RowSampler

    scores = torch.tensor([2.0, 1.0, 0.0, -1.0]).repeat(4000, 1)              # (rows, vocabulary)
    drawn = RowSampler(range(4000), temperature=0.5)(None, scores).argmax(-1)
    frequency = torch.bincount(drawn, minlength=4) / 4000

    def distance(temperature: float) -> float:
        return 0.5 * (frequency - (scores[0] / temperature).softmax(-1)).abs().sum().item()

    assert distance(0.5) < 0.03 and distance(1.0) > 0.1                      # the temperature's softmax, not another
    alone = RowSampler([7], temperature=0.5)(None, scores[:1])                # a row's draw ignores the batch
    assert torch.equal(alone[0], RowSampler([3, 7], temperature=0.5)(None, scores[:2])[1])


def test_vllm_generator_names_the_extra():
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed")
    with pytest.raises(ConfigError, match=r"ra3lab\[gpu\]"):
        VLLMGenerator("/no/model")


def test_cut():
    body = "    x = 1\n\n    return x\n"
    assert cut(body + "def g():\n    pass\n") == body
    assert cut(body + "class A:\n") == body
    assert cut(body + "print(x)\n") == body                      # an unindented line ends the body
    assert cut("def g():\n") == "" and cut(body) == body and cut("    x = 1") == "    x = 1"
    assert cut(body + "    y = 2\n", stop=("\n    y",)) == body and cut("    x = 1;y", stop=(";",)) == "    x = 1"


# --- bench -------------------------------------------------------------------------------------------

def test_bench_estep_contract():
    report = bench_estep(G=3, snippets=2, steps=2, hidden=16, layers=1, pretrain_programs=20, pretrain_steps=5,
                         max_thought_tokens=4, progress=False)
    json.dumps(report)
    assert all(not isinstance(value, dict | list) for value in report.values())
    assert report["rollouts_identical"] and report["max_abs_loglik_diff"] <= 1e-4 and report["logliks_agree"]
    assert report["speedup"] == pytest.approx(report["peer_s_per_step"] / report["ours_s_per_step"])
    for side in ("ours", "peer"):
        split = [report[f"{side}_{phase}_s"] for phase in ("rollout", "scoring", "update")]
        assert min(split) > 0 and sum(split) == pytest.approx(report[f"{side}_s_per_step"])
    assert report["amdahl_bound"] == pytest.approx(report["peer_s_per_step"] / report["peer_rollout_s"])
    assert report["tokens_scored"] > 0 and 0 < report["shared_prefix_fraction"] < 1
    assert report["shared_prefix_fraction"] <= report["trie_shared_fraction"] < 1
    assert 0 <= report["thought_rate"] <= 1
    assert report["meets_target"] == (report["speedup"] >= report["target_speedup"])
    assert report["params"] > 0 and report["threads"] >= 1


def test_trie_size_counts_each_shared_prefix_once():
    assert trie_size([[1, 2, 3], [1, 2, 4], [1, 5]]) == 5          # 1 | 1 2 | 1 2 3 | 1 2 4 | 1 5
    assert trie_size([[7, 8]] * 4) == 2 and trie_size([[1], [2]]) == 2


@pytest.mark.parametrize("field, value", [("G", 1), ("snippets", 0), ("steps", 0), ("hidden", 12), ("layers", 0),
                                          ("G", 2.5), ("pretrain_steps", 0), ("max_thought_tokens", 0),
                                          ("lookahead", -1), ("temperature", 0)])
def test_bench_estep_bad_input(field, value):
    with pytest.raises(ConfigError, match=field):
        bench_estep(**{field: value}, progress=False)


def test_tokenizing_a_whole_text_gives_the_line_convention_ids():
    """Trainers that tokenize whole texts (TRL's) see exactly the ids the codec builds line by line."""
    from ra3lab.codeworld import CodeWorld

    programs = CodeWorld(comment_fraction=0.5).sample(60, seed=0)
    tokenizer = train_tokenizer([line for p in programs for line in p.lines()], vocab_size=400)
    codec = LineCodec(tokenizer)
    for program in programs:
        assert tokenizer(program.source(), add_special_tokens=False)["input_ids"] == \
            codec.encode_lines(program.lines(), bos=False)[0]
