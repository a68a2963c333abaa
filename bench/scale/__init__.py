"""bench/scale: many `wirewatch run` workers sharing one PostgreSQL, on a loopback feed farm."""
