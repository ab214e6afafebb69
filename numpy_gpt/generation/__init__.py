"""Text from a model: one sequence with a KV cache (generate), many at once (batch_generate),
the sampling rules and text streaming (sampling), a loaded checkpoint ready to sample
(sampler) and a conversation (chat)."""
