"""SSIMBaD pretraining (and testing) with LightningCLI.

    python pretrain.py fit --config configs/pretrain.yaml --data.root DIR
    python pretrain.py fit --config configs/pretrain.yaml --config configs/baselines/edm.yaml --data.root DIR
    python pretrain.py test --config configs/pretrain.yaml --data.root DIR --data.test_root TEST --ckpt_path CKPT

Every option is listed by ``python pretrain.py fit --help``; ``--print_config`` shows the resolved configuration.
"""
from apps.cli import run_cli
from models.colorizer import DiffusionColorizer

if __name__ == "__main__":
    run_cli(DiffusionColorizer)
