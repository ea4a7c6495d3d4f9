"""What only training needs, on top of models/ and data/: the LightningCLI of pretrain.py and finetune.py (its
one-line errors and compact help), the callbacks the configs name (throughput, loss watch) and the atomic
checkpoint writer. models/ stays plain PyTorch plus the LightningModules' maths; nothing in utils/, data/ or models/
imports this package.
"""
