"""Fine-tune MixingBuddy on the flawed-mix data set with TRL.

    accelerate launch train_sft.py --config configs/paper.yaml      # MERT + Qwen2-7B-Instruct, QLoRA, on CUDA
    accelerate launch train_sft.py --config configs/tiny.yaml       # tiny log-mel model, on CPU
    accelerate launch train_sft.py --config configs/tiny.yaml --max_steps 50 --output_dir runs/try

Any field of TRL's `ScriptArguments`, `SFTConfig` and `ModelConfig` (quantization and LoRA) or of
`mixingbuddy.training.run.MixingBuddyArguments` can be set in the YAML file or on the command line. When training
ends, `output_dir` holds the final model in Hub layout (LoRA merged), loadable with
`AutoModelForCausalLM.from_pretrained(output_dir, trust_remote_code=True)`; with LoRA, the adapter alone (LoRA,
projector, layer weights, advice head) is in `output_dir/adapter`.
"""

from mixingbuddy.training.run import run

if __name__ == "__main__":
    run()
