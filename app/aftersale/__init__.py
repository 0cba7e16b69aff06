"""After the sale: what happens to a lead once a buyer has bought it (SPEC §12)."""
