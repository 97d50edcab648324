"""Makers of real inputs for corpus models: photos, rendered text, synthesized speech, files on disk."""
