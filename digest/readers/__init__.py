"""The readers: subscribers.csv read and checked, names and addresses, bounces, and the file written back.

Owns: subscribers.csv rows -> audience (subscribers), the given name a greeting may use (names),
address checks (addresses), delivery status notifications -> suppressions (bounces),
suppressions written back to the file (writeback), per-reader outcomes as CSV (export).
May import: state and the top-level modules (models, errors, events, console, files, outcomes).
"""
