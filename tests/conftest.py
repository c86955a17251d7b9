import torch

# Subnormal floats in the backward pass slow CPU matmuls by up to 50x; set before any work.
torch.set_flush_denormal(True)
