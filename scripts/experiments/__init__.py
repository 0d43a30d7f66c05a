"""Research experiments: each writes the tables a docs/experiments/ page quotes."""
