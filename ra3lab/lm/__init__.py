"""Language models for the practice side: tokenizers, tiny or loaded causal LMs, the line
convention, token log-likelihoods, generation and next-token training."""

from ra3lab.lm.codec import LineCodec
from ra3lab.lm.generate import HFGenerator, VLLMGenerator
from ra3lab.lm.model import build_model, check_compatible, load_model
from ra3lab.lm.scoring import token_logprobs
from ra3lab.lm.tokenizer import load_tokenizer, train_tokenizer
from ra3lab.lm.train import train_ntp

__all__ = ["HFGenerator", "LineCodec", "VLLMGenerator", "build_model", "check_compatible", "load_model",
           "load_tokenizer", "token_logprobs", "train_ntp", "train_tokenizer"]
