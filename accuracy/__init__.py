"""The drift-aged accuracy model: device configuration, the aihwkit adapter (the only module
importing aihwkit), the fast path, the exact oracle, its SQLite cache, per-network artifacts and
the surrogate."""
