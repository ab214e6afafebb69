"""The one training loop (train) for either twin and the NumPy twin's backend for it
(numpy_backend; the torch twin's is torch_gpt/train.py), its settings (config) and the checks
before a run starts (plan), the time estimate printed before it (estimate), fine-tuning and
LoRA on top of it (finetune), the console progress (progress), signals (run_guard), the
diagnostics plot (diagnostics), runs overlaid (curves), GPT-2 against Llama blocks at equal
budgets (compare, compare_report) and the machine's load while something ran (machine_load)."""
