"""Small shared pieces: errors, ids, messages, logging, atomic files. Stdlib and numpy only."""
