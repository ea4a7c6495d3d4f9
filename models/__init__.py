"""The SSIMBaD diffusion core: noise schedules, the preconditioned denoiser, the U-Net, samplers and guidance."""
