"""A synthetic world with known answers, and the experiment that trains a small FactorPortrait
in it to show what each condition carries (EXPERIMENTS.md)."""
