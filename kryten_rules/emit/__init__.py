"""Stage 5, emit: model text to CyTube-safe chat messages.

``output`` cleans a reply, removes anything CyTube would read as a command,
and splits it into parts. Encoding those parts as Kryten-Robot commands is
``kryten_rules.wire``'s job, which the intake shares.
"""
