"""A tiny Llama-architecture GGUF model with random weights, written with the ``gguf``
package: a SentencePiece-style vocabulary (control tokens, 256 byte tokens, letters with
and without the word-start mark), a few layers of random weights.

Its output is gibberish by construction. One dimension of the embeddings is a large
constant that the small random layers do not overturn, and the output rows of the
control and byte tokens point against it: generation never ends early (no end-of-text)
and every generated token is a printable letter, so a test can count streamed pieces.
"""

from pathlib import Path

import gguf
import numpy as np

LETTERS = "abcdefghijklmnopqrstuvwxyz"
EMBED, HEADS, FFN, LAYERS, CONTEXT = 256, 4, 512, 3, 4096


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256
    pieces = [*LETTERS, *(f"\u2581{c}" for c in LETTERS)]
    tokens += pieces
    types += [gguf.TokenType.NORMAL] * len(pieces)
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    return tokens, scores, [int(t) for t in types]


def write_tiny_model(path: Path, seed: int = 2026) -> Path:
    rng = np.random.default_rng(seed)
    tokens, scores, types = vocabulary()

    def weights(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(EMBED)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(EMBED // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)

    embeddings = weights(len(tokens), EMBED)
    embeddings[:, 0] = 8.0  # the constant dimension (see the module)
    output = weights(len(tokens), EMBED, scale=1.0)
    output[:, 0] = 0.0
    output[: 3 + 256, 0] = -50.0  # control and byte tokens: never the likeliest
    writer.add_tensor("token_embd.weight", embeddings)
    writer.add_tensor("output_norm.weight", np.ones(EMBED, dtype=np.float32))
    writer.add_tensor("output.weight", output)
    for layer in range(LAYERS):
        name = f"blk.{layer}"
        writer.add_tensor(f"{name}.attn_norm.weight", np.ones(EMBED, dtype=np.float32))
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{name}.{part}.weight", weights(EMBED, EMBED))
        writer.add_tensor(f"{name}.ffn_norm.weight", np.ones(EMBED, dtype=np.float32))
        writer.add_tensor(f"{name}.ffn_gate.weight", weights(FFN, EMBED))
        writer.add_tensor(f"{name}.ffn_up.weight", weights(FFN, EMBED))
        writer.add_tensor(f"{name}.ffn_down.weight", weights(EMBED, FFN))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
