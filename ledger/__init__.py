"""dmchain ledger: the quality-weighted token economy and data-market state transition.

Module map (each has one job):

* :mod:`ledger.tx` - transaction kinds, payload shapes, canonical encoding,
  signing, :func:`ledger.tx.get_tx_error` (stateless checks).
* :mod:`ledger.block` - headers, blocks, block hash, checkpoint digest.
* :mod:`ledger.merkle` - transaction Merkle root and inclusion proofs.
* :mod:`ledger.genesis` - parameters (Table 2 defaults), genesis JSON.
* :mod:`ledger.records` - state records and their encodings.
* :mod:`ledger.state` - the state overlay and the incremental state digest.
* :mod:`ledger.rules` - one ``process_*`` rule per transaction kind.
* :mod:`ledger.apply` - ``apply_block(state, block) -> (state', receipts)``.
* :mod:`ledger.chain` - :class:`ledger.chain.Ledger`: genesis, atomic commits, reopen.
* :mod:`ledger.queries` - read-only queries (accounts, stakes, assets, audit log...).
* :mod:`ledger.schema` - the key schema; :mod:`ledger.store` - key-value stores.
"""
