"""LM adaptation: continue training a T5 checkpoint on the prefix-LM objective (Lester et al. 2021, Sec. 3.2)."""
