"""What a request is checked and estimated against before it runs: the trained ranges a
checkpoint records (``guardrails``) and the one cost model of time and memory (``cost``)."""
