"""A user's own network class, for the test that a class outside the registry loads only when trusted explicitly."""
from models.unet import UNet


class MyUNet(UNet):
    pass
