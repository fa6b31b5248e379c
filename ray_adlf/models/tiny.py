"""The built-in ``tiny`` model: a small random-init Llama and a byte-level BPE tokenizer.

It is built offline in seconds from the generated sample conversations and shipped as package
data (``ray_adlf/resources/tiny``) in the usual Hugging Face layout, so every code path that
takes a real model path takes it unchanged. Rebuild with ``python -m ray_adlf.models.tiny OUT``;
the build is deterministic for a given seed.

Shape: vocab 1024 (byte-level, so any text encodes), hidden 128, 2 layers, 2 heads of 64,
MLP 256, tied embeddings, 1024 positions: about 0.46M parameters.

Chat template (the ``standard`` token format)::

    <|system|>\\n{content}<|end|>\\n<|user|>\\n{content}<|end|>\\n<|assistant|>\\n{content}<|end|>\\n
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from ray_adlf.data.sample import generate_sample

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
VOCAB_SIZE = 1024


def tiny_model_path() -> Path:
    """Where the shipped tiny model lives inside the installed package."""
    return Path(__file__).resolve().parent.parent / "resources" / "tiny"


def _corpus(rows: int, seed: int) -> list[str]:
    texts = []
    for row in generate_sample(rows, seed):
        texts += [turn["content"] for turn in row["conversation"]]
        texts.append(row.get("score_reason", ""))
    digits = random.Random(seed)
    texts += [" ".join(str(digits.randint(0, 999)) for _ in range(20)) for _ in range(50)]
    return texts


def build_tokenizer(seed: int = 0, vocab_size: int = VOCAB_SIZE):
    """Train the byte-level BPE tokenizer (at most ``vocab_size`` tokens) and wrap it as a
    PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(3000, seed), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="<|end|>",
        unk_token=None,
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>", "</s>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = 1024
    return tokenizer


def build_model(tokenizer, seed: int = 0):
    """A random-init LlamaForCausalLM sized for ``tokenizer``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def build_tiny(out_dir: str | Path, seed: int = 0) -> Path:
    """Build tokenizer and model and ``save_pretrained`` both into ``out_dir``."""
    out = Path(out_dir)
    tokenizer = build_tokenizer(seed)
    model = build_model(tokenizer, seed)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the offline tiny model.")
    parser.add_argument("out", nargs="?", default=str(tiny_model_path()))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(build_tiny(args.out, args.seed))


if __name__ == "__main__":
    main()
