"""Model versions for ML engineers: publish, gate, canary, promote, roll back (issue 11)."""
