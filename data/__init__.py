"""Data pipeline: XDoG sketches, TPS-warped references, the evaluation protocol, datasets and the demo faces."""
