"""Adapter for ROOST's Coop review tool: review records out as reports, decisions back in."""
