"""Training: dataset builders, LoRA rounds, evaluation, export and publishing."""
