"""Fine-tune MixingBuddy on the flawed-mix data set with TRL.

    accelerate launch --config_file configs/accelerate/single.yaml train_sft.py --config configs/paper.yaml   # QLoRA
    accelerate launch --config_file configs/accelerate/single.yaml train_sft.py --config configs/tiny.yaml    # CPU
    python train_sft.py --config configs/tiny.yaml --max_steps 50 --output_dir runs/try                        # the same

Any field of TRL's `ScriptArguments`, `SFTConfig` and `ModelConfig` (quantization and LoRA) or of
`mixingbuddy.training.run.MixingBuddyArguments` can be set in the YAML file or on the command line. When training
ends, `output_dir` is what `mixingbuddy evaluate/critique --model` and `mixingbuddy.load_model` take as it is: the
model in Hub layout (full fine-tuning; with LoRA the merged model, the adapter alone in `output_dir/adapter`), or for
QLoRA the adapter, which names its base like any peft adapter (`mixingbuddy export` merges it into a plain folder).

`output_dir` must be new or empty, the folder of the checkpoint given to `--resume_from_checkpoint`, or with
`--overwrite_output_dir` an earlier run's folder (its `.mixingbuddy.json` says training), which is then replaced whole;
it never overlaps the data set, the stems or the model folder. A run that fails before its first checkpoint leaves no
folder behind.
"""

from mixingbuddy.training.run import run

if __name__ == "__main__":
    # the process group ended before exit: left to the interpreter, a gloo rank sometimes aborted after training
    run().accelerator.end_training()
