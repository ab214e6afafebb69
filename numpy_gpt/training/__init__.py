"""The one training loop (train) for either twin, its settings (config) and the checks before
a run starts (plan), fine-tuning and LoRA on top of it (finetune), the console progress
(progress), signals (run_guard) and the diagnostics plot (diagnostics)."""
