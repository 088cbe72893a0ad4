"""Accounts app: a Profile model whose rows are read through django-cachestrat."""
