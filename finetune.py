"""SSIMBaD trajectory refinement (finetuning a pretrained checkpoint) and testing, with LightningCLI.

    python finetune.py fit --config configs/finetune.yaml --data.root DIR --model.init_checkpoint CKPT
    python finetune.py fit ... --model.strategy lpips-vgg | clip | mse --model.refine_steps 50
    python finetune.py test --config configs/finetune.yaml --data.root DIR --data.test_root TEST --ckpt_path CKPT
    python finetune.py test ... --model.guidance_ssim_scale S [--model.guidance_target gt  (oracle, analysis only)]

The model is :class:`models.refiner.TrajectoryRefiner`; every option is listed by ``python finetune.py fit --help``.
"""
import torch

from apps.cli import run_cli
from models.refiner import TrajectoryRefiner
from utils.cpu import limit_heap_fragmentation


if __name__ == "__main__":
    if not torch.cuda.is_available():  # CUDA memory has its own caching allocator
        limit_heap_fragmentation()
    run_cli(TrajectoryRefiner)
