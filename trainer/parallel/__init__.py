"""Data-parallel training: one run's batches across N workers, bit-identical for any N.

The pure rules (they import only trainer.nn, and `admission` the deployment's capacity and
ceilings rules), then the two modules that move data, each through adapters passed in:

- `shards`: the fixed micro-shards (MICRO_SHARDS, whatever the number of workers), which examples
  each holds, and which micro-shards (hence which contiguous slice of the training set) a worker owns;
- `tree`: the one fixed binary tree in which the micro-shards' partial gradients are summed, and
  its aligned nodes, so a worker can sum its own leaves first and the result is the same bits;
- `flat`: every parameter in one flat vector, cut into per-worker chunks for the reduce-scatter;
- `partials`: one micro-shard's partial gradient and cost (forward and backward on its examples);
- `reference`: the whole algorithm in one process for N simulated workers: the result a
  distributed run must reproduce, as `trainer.nn.monolithic` is for the chain;
- `admission`: what the launch checks of a request's `workers` (concurrency, memory, cache, ceilings);
- `worker`: one worker's steps, reducing through an exchange (trainer.stores.reduction_store), with
  rejoin, hand-on and standing in for lost workers; `launching`: a run's start (the micro-shards in
  the cache, one event per worker). The invocation's life is trainer/handlers/worker.py.

Why bit-identical: a partial gradient depends only on its micro-shard's examples and the weights
(never on which worker, or how many, computed it); the partials are summed in one tree whose
shape depends only on MICRO_SHARDS; the optimizer's update is elementwise, so applying it chunk by
chunk (each worker its own chunk) gives the same bits as applying it to the whole vector.
"""
