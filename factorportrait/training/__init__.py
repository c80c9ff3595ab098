"""Training: samples composed from the core's stages (samples.py), data preparation
(prepare.py), the prepared dataset (data.py), the objective (objective.py), what trains
(parameters.py), checkpoints with EMA and trained ranges (checkpointing.py), validation videos
(validation.py) and the accelerate loop (loop.py), configured by TrainConfig (config.py); cost
estimates in cost.py."""
