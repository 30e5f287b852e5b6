"""Supervised fine-tuning with TRL: the collator that renders flawed mixes, the trainer with the auxiliary loss, the
callbacks, and the entry point behind `train_sft.py`. Import the modules you need: only `trainer` and `run` load TRL."""
