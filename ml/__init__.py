"""dmchain ml package: off-chain training jobs that independent executors agree on.

spec (job spec, canonical bytes, hash) -> data (provider datasets and their
byte format) -> runner (deterministic federated training, pinned by
determinism; models, aggregate, contribution, metrics, seeding) -> result and
digest (what executors compare and the chain records) -> quality (q from
contributions) and settlement (integer split of the bid). worker is the
executor process entry point (``python -m ml.worker``).
"""
