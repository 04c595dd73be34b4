"""Deterministic simulator of a PBFT + PoS cluster (the only consensus code that
owns a random source: a seeded ``random.Random``)."""
