"""Applications built on models/ and data/: the LightningCLI wiring, colorize, the phi* search and reports.

Imported by the entry scripts (pretrain.py, finetune.py, colorize.py, optimal_phi.py) and by nothing in utils/,
data/ or models/.
"""
