"""Data pipeline: TPS-warped references, sketches (with utils.xdog), the evaluation protocol, the training stream,
datasets and the demo faces."""
