"""The state database: issues, their stories, notes and audience, per-reader deliveries, suppressions.

Owns: every SQL statement and the database driver. May import: the top-level models and errors
only; everything else reaches the database through ``Ledger``'s named methods.
"""
