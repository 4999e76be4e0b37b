"""Constructs that make up the emotion service stack."""
