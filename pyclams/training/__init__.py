"""The training loop, data split and history table."""
