"""Plumbing every layer may use: project paths, atomic files, time units, preset files, process set-up.

Nothing here knows about networks, hardware or accuracy; it imports no project module.
"""
