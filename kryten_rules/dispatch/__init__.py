"""Stage 4, dispatch: a fired decision to text.

``prompts`` renders a rule's templates (in the sandboxed worker processes of
``renderpool`` in the service), and ``llm`` runs the model chain.
"""
