"""Stage 1, the rule format: files on disk to resolved, checked rule specs.

Every rule and prompt file is read once into a source (``sources``), parsed
into YAML nodes that keep their spans (``yamlload``), checked against the JSON
Schema (``schema``), resolved into frozen specs with defaults merged once
(``resolve``), and checked for meaning (``checks``, ``shadowing``). The RE2 and
Jinja2 sublanguages inside rule files live here too (``patterns``,
``templates``, ``templatelimits``) because checking them is part of reading a
rule. Nothing here imports a later stage.
"""
