"""The state database: issues, their stories, notes and audience, per-reader deliveries, suppressions.

Owns: every SQL statement and the database driver: ledger (``Ledger``'s named queries, the
scheduler's job store), schema (the tables; opening, creating and upgrading a database). Its
driver's errors become ``StateError``s here. May import: the top-level models, errors and outcomes
only; everything else reaches the database through ``Ledger``'s named methods, and
tests/test_state_seam.py fails the build if any other module imports a driver or holds SQL.
"""
