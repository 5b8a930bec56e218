"""Placeholder: the local feed server fixture lands here."""
