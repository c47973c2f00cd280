"""Learning with noisy labels: finding label issues (confident learning), co-teaching and ELR as
training tasks, and the report section of a run whose labels were corrupted on purpose."""
