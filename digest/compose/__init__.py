"""Where an issue is chosen and becomes HTML, text and MIME bytes, once per issue.

Owns: editions' send times and story windows (editions), choosing an issue's stories
(planning), Jinja2 rendering (render), CSS inlining (inline), HTML -> text (plaintext), the
preflight checks, per-reader values and tokens (personalise), the MIME template and header guard
(message), DKIM (dkim), and the pipeline that ties them (pipeline.compose). May import: sources,
state (an issue once created is read back from it), and the top-level models, errors and events.
"""
