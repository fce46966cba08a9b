"""Tiny random causal LMs, a word-level tokenizer and LoRA adapters, built locally for fast tests."""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = (
    "the a cat dog sat on mat ran fast slow happy sad yes no good bad very short long answer question "
    "is are what why how helpful harmless funny concise please tell me about sky blue red green one two "
    "three four five and or but not it this that hello world"
).split()
SPECIALS = ["<pad>", "<|im_start|>", "<|im_end|>", "<unk>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)


def make_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + ["system", "user", "assistant"] + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<|im_end|>",
                                  bos_token="<|im_start|>", unk_token="<unk>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def make_model_folder(path: Path, seed: int, *, lm_head_padding: int = 5, tokenizer=None) -> Path:
    """Save a tiny random Llama + tokenizer; the lm_head is padded beyond the tokenizer's size."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or make_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer) + lm_head_padding, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger logits than the default init, so distributions are far from uniform
        model.lm_head.weight.mul_(40.0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_lora_adapter(base_folder: Path, path: Path, seed: int) -> Path:
    """A LoRA adapter on `base_folder` with random (non-zero) A and B."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_folder)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=g) * 0.5)
    peft_model.save_pretrained(path)
    return path
