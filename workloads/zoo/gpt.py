"""A small GPT (Radford et al., 2018): a decoder-only transformer over characters, from plain ``nn.Linear``.

Token and learned position embeddings, pre-norm blocks of causal multi-head self-attention and a
GELU MLP (the blocks of ``workloads.zoo.vit`` with a causal mask: separate query/key/value/output
projections of kind "attention", the score and value matmuls counted as unmappable MACs), a final
LayerNorm and a linear language-model head, which the layer table lists as the classifier. The
embeddings are table look-ups, not matrix-vector products, and stay digital.

Input: token ids (N, T) with T <= ``context``, int64 or float (the layer table traces zeros of
the input shape). Output: next-token logits (N, vocabulary, T), class scores along dim 1 as an
image classifier's (N, classes) are, so ``logits.argmax(1) == labels`` and
``F.cross_entropy(logits, labels)`` with labels (N, T) score every position.
"""

from __future__ import annotations

import torch
from torch import nn

from workloads.zoo.vit import EncoderBlock


class GPT(nn.Module):
    def __init__(self, vocab_size: int, context: int, width: int, blocks: int, heads: int,
                 mlp_dim: int) -> None:
        super().__init__()
        self.context = context
        self.token = nn.Embedding(vocab_size, width)
        self.position = nn.Embedding(context, width)
        self.blocks = nn.Sequential(*(EncoderBlock(width, heads, mlp_dim, causal=True) for _ in range(blocks)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)
        # GPT-2's initialisation of the embeddings (torch's default N(0, 1) dwarfs the residual
        # updates of the first steps).
        for embedding in (self.token, self.position):
            nn.init.normal_(embedding.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.long()
        length = tokens.shape[1]
        if length > self.context:
            raise ValueError(f"{length} tokens exceed the context of {self.context}")
        x = self.token(tokens) + self.position.weight[:length]
        logits = self.head(self.norm(self.blocks(x)))  # N, T, vocabulary
        return logits.transpose(1, 2)

    def unmappable_ops(self, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> dict[str, int]:
        return {"elementwise": inputs[0].shape[1] * self.position.embedding_dim}  # adding the positions


def gpt(vocab_size: int = 98, context: int = 64, width: int = 128, blocks: int = 4, heads: int = 4,
        mlp_dim: int = 256) -> nn.Module:
    """GPT with 4 blocks of width 128, 4 heads, a context of 64 tokens: 6 x blocks + 1 Linear layers."""
    return GPT(vocab_size, context, width, blocks, heads, mlp_dim)
