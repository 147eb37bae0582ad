"""The accounting: token counters, the cost model, accrual, history and windows,
capacity, and the GPUs the node pays for."""
