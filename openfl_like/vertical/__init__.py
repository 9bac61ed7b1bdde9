"""Two-party vertical federated learning: a leader and a follower exchange named tensors step by
step over mutual TLS (:class:`Communicator`), agree on a checkpoint and on where their readers
start, and fail any operation that outlives its timeout."""
