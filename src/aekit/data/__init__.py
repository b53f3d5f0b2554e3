"""Data in and out: built-in datasets and file readers, sources read a block at a time,
and the streaming view the training loop and inference read from."""
