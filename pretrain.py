"""SSIMBaD pretraining (and testing) with LightningCLI. For example:

  python pretrain.py fit --config configs/cpu64.yaml --data.root DIR     (CPU, 64 px)
  python pretrain.py fit --config configs/pretrain.yaml --data.root DIR  (2 GPUs, 256 px)
  python pretrain.py test --config configs/cpu64.yaml --ckpt_path CKPT --data.test_root TEST
Baselines: add --config configs/baselines/edm.yaml (or ddpm.yaml, cold.yaml) after the first.

An option left out takes the default below; after --config, the help shows that config's values
(python pretrain.py fit --config configs/cpu64.yaml --help). --print_config prints the whole
configuration; --model.net.help UNet (any class option: --OPTION.help CLASS) a class's own options.
"""
from models.diffusion import DiffusionColorizer
from training.cli import run_cli

if __name__ == "__main__":
    run_cli(DiffusionColorizer, description=__doc__)
