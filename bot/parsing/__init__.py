"""Parsing of free Vietnamese text: numbers, money amounts, commune names."""
