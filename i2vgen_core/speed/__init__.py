"""Optional speed work: fused kernels (Triton or torch), fp8 compute, CUDA graphs and the levers that switch them."""
