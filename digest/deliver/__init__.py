"""Where bytes go on the wire: SMTP connections, the dispatch loop and retries.

Owns: the SMTP transport (aiosmtplib, transport), the .eml dry-run folder (eml), the pool, rate
limit, retries and resume (send, ratelimit), which relay carries each copy (relays), one sender per issue (locks), one issue end to end
(runner), where an issue stands (status), an issue's per-reader copies (copies), the dry run
(dryrun) and the demo (demo), and the loopback capture server of the demo and tests (capture). Replies are classified by the top-level
``outcomes``. May import: compose, sources, readers, state and the top-level modules.
"""
