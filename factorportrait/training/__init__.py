"""Training: data preparation (prepare.py) and the fine-tuning loop (loop.py), configured by
TrainConfig (config.py)."""
