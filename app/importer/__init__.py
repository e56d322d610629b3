"""Importers that bring content from other systems (WordPress exports) into the newsroom."""
