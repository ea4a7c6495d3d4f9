"""A local web page to colorize sketches with a checkpoint (apps/webui.py).

    python app.py --checkpoint CKPT            # then open http://127.0.0.1:7860
    make serve                                 # the demo checkpoint of `make demo`

The page binds to 127.0.0.1 unless --host says otherwise. The checkpoint is read only from this command line, with
the same safe loader as colorize.py.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from utils.cpu import use_all_cores
from utils.errors import UserError, exit_on_user_error

DEFAULT_CHECKPOINT = Path("outputs/demo/checkpoints/last.ckpt")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, metavar="CKPT",
                        help=f"the model to serve (default: {DEFAULT_CHECKPOINT}, written by `make demo`)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    args = parser.parse_args(argv)
    checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
    if not checkpoint.is_file():
        raise UserError(f"no checkpoint at {checkpoint}: pass --checkpoint CKPT, or run `make demo` to train the "
                        "demo model (about 8 minutes on a CPU)")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local page: nothing is reported anywhere
    use_all_cores()
    from apps.webui import describe_checkpoint, launch  # noqa: PLC0415 - after the argument checks

    page = describe_checkpoint(checkpoint)
    print(f"serving {checkpoint} on http://{args.host}:{args.port}", flush=True)
    launch(page, args.host, args.port)


if __name__ == "__main__":
    main()
