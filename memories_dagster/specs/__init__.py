"""Declarations: pydantic models, discovery and readable errors."""
