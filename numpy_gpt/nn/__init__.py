"""The reference model and its math: GPTConfig (config), the layers' forward/backward pairs
(layers/), GPT (model), AdamW (optim), numerical gradient checks (gradcheck), LoRA (lora),
the checkpoint format (checkpoint); and how it runs fast: NumPy or CuPy (device), both cores
(parallel), glibc's allocator (runtime)."""
