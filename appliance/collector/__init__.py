"""The collector: receivers, template cache, numba decoders producing FlowBatch, and what follows."""
