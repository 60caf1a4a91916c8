"""Where stories come from: Markdown files, feeds and issue notes, read into checked ``Story`` values.

Owns: reading story files (front matter, Markdown -> sanitised HTML), feeds (fetch, parse), issue
notes, and gathering them for an issue. May import: the top-level models, errors, events, files
and console. Never imports compose, deliver, readers or state: a story knows nothing of its readers.
"""
