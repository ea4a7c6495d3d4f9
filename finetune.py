"""SSIMBaD trajectory refinement (finetuning a pretrained checkpoint) and testing, with LightningCLI. For example:

  python finetune.py fit --config configs/finetune.yaml --data.root DIR --model.init_checkpoint CKPT
  python finetune.py fit ... --model.strategy lpips-vgg | clip | mse --model.refine_steps 50
  python finetune.py test --config configs/finetune.yaml --ckpt_path CKPT --data.test_root TEST
  python finetune.py test ... --model.guidance_ssim_scale S [--model.guidance_target gt (oracle)]
On a CPU: --config configs/finetune_demo.yaml (the demo checkpoint's refinement).

An option left out takes the default below; after --config, the help shows that config's values
(python finetune.py fit --config configs/finetune.yaml --help). --print_config prints the whole
configuration; --model.net.help UNet (any class option: --OPTION.help CLASS) a class's own options.
"""
import torch

from models.refiner import TrajectoryRefiner
from training.cli import run_cli
from utils.cpu import limit_heap_fragmentation


if __name__ == "__main__":
    if not torch.cuda.is_available():  # CUDA memory has its own caching allocator
        limit_heap_fragmentation()
    run_cli(TrajectoryRefiner, description=__doc__)
